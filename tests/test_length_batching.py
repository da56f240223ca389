"""What the `length` column is for (docs/sequence-lengths.md): TRL's length-grouped sampler, the `length_batches`
sampler with the card's collate function, and the `packs` planner; offline, on CPU, with the tiny Qwen3-VL of
tests/tiny_qwen.py, on a `small` build loaded the way users load it."""

import math
import random

import datasets
import pytest
import torch
from helpers import make_mirror, run_readme_snippets
from tiny_qwen import tiny_model, tiny_processor, train_tokenizer
from torch.utils.data import DataLoader
from trl import SFTConfig

import build

TRAIN_ARGS = dict(per_device_train_batch_size=2, learning_rate=1e-2, logging_steps=1, report_to="none",
                  save_strategy="no", seed=0, disable_tqdm=True)
# Small images of several shapes: the tiny processor (at most 64 x 64 pixels) gives them 1 to 4 image tokens.
SIZES = [(64, 48), (40, 30), (96, 20), (24, 80), (50, 50)]


@pytest.fixture(scope="module", autouse=True)
def quiet_machine():
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(datasets.config, "SLEEP_TIME_ON_THREADS_SHUTDOWN", 0)  # datasets 5.2 sleeps after shuffled passes
        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # a ~150k-parameter model gains nothing from intra-op threads
        yield
        torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    mirror = tmp_path_factory.mktemp("batching-mirror")
    make_mirror(mirror, images_per_split=12, questions_per_image=5, image_sizes=SIZES)
    path = tmp_path_factory.mktemp("batching-repo")
    args = ["--config", "small", "--data-dir", str(mirror), "--output-dir", str(path), "--max-images-validation", "2"]
    assert build.main(args) == 0
    return path


@pytest.fixture(scope="module")
def card():
    return run_readme_snippets("trl", "sft", "qwen", "collate", "lengths", "length_batches", "packs")


@pytest.fixture(scope="module")
def processor(repo):
    rows = datasets.load_dataset(str(repo), "small", split="train")
    return tiny_processor(train_tokenizer([turn["content"] for turns in rows["conversations"] for turn in turns]))


@pytest.fixture(scope="module")
def train(repo, card, processor):
    return card["with_lengths"](datasets.load_dataset(str(repo), "small", split="train"), processor)


def test_rows_differ_in_length(train):
    assert len(train) >= 32 and len(set(train["length"])) >= 10


def record_batches(model) -> list[dict]:
    batches = []
    model.register_forward_pre_hook(lambda module, args, kwargs: batches.append(
        {key: value.detach().clone() for key, value in kwargs.items() if torch.is_tensor(value)}), with_kwargs=True)
    return batches


@pytest.mark.parametrize("answers_only", [True, False])
def test_sft_trainer_groups_batches_by_the_length_column(card, processor, train, tmp_path, answers_only):
    """Every row once, exactly `length` tokens long under TRL's own collator (answers_only swaps in TRL's training
    template), in the order transformers' LengthGroupedSampler makes from the column (trainer_pt_utils.py,
    get_length_grouped_indices): mega-batches of min(50, rows // (4 * batch)) batches, each sorted longest first,
    the longest row of all moved to the very front."""
    model = tiny_model(processor.tokenizer)
    batches = record_batches(model)
    trainer = card["sft_trainer"](model, processor, train, str(tmp_path), answers_only=answers_only, on_cpu=True,
                                  num_train_epochs=1, train_sampling_strategy="group_by_length",
                                  remove_unused_columns=False, **TRAIN_ARGS)
    trainer.train()
    assert len(batches) == math.ceil(len(train) / 2)
    tokens = [int(row) for batch in batches for row in batch["attention_mask"].sum(dim=1)]
    assert sorted(tokens) == sorted(train["length"])
    assert tokens[0] == max(tokens)
    size = max(1, min(len(train) // (4 * 2), 50)) * 2
    assert size >= 8
    for start in range(0, len(tokens), size):
        rest = tokens[start:start + size][1:]  # a mega-batch's first row may be the one swapped with the longest
        assert rest == sorted(rest, reverse=True)
    for batch in batches:  # padded to the batch's longest row, no further
        assert batch["input_ids"].shape[1] == batch["attention_mask"].sum(dim=1).max()


def test_by_default_the_trainer_drops_the_column_and_fails(card, processor, train, tmp_path):
    trainer = card["sft_trainer"](tiny_model(processor.tokenizer), processor, train, str(tmp_path), on_cpu=True,
                                  max_steps=1, train_sampling_strategy="group_by_length", **TRAIN_ARGS)
    assert "length" in trainer.train_dataset.column_names  # to_trl kept it; the Trainer drops it
    with pytest.raises(ValueError, match="Can only automatically infer lengths"):
        trainer.get_train_dataloader()


def test_group_by_length_is_no_longer_an_argument(tmp_path):
    with pytest.raises(TypeError, match="group_by_length"):
        SFTConfig(output_dir=str(tmp_path), group_by_length=True, use_cpu=True, bf16=False)


def test_a_stream_is_not_grouped(card, repo, processor, tmp_path):
    """The Trainer builds no sampler for an IterableDataset (and says nothing): rows come in the stream's order."""
    stream = card["with_lengths"](datasets.load_dataset(str(repo), "small", split="train", streaming=True), processor)
    trainer = card["sft_trainer"](tiny_model(processor.tokenizer), processor, stream, str(tmp_path), on_cpu=True,
                                  max_steps=1, train_sampling_strategy="group_by_length",
                                  remove_unused_columns=False, **TRAIN_ARGS)
    first = next(iter(trainer.get_train_dataloader()))
    in_order = [row["length"] for row in stream.select_columns(["length"])]
    assert first["attention_mask"].sum(dim=1).tolist() == in_order[:2]
    assert max(in_order) not in in_order[:2]  # grouped, the longest row would have come first


def padding(lengths, batches) -> int:
    return sum(max(lengths[i] for i in batch) * len(batch) - sum(lengths[i] for i in batch) for batch in batches)


def test_length_batches_with_the_cards_collate(card, processor, train):
    lengths = train["length"][:]
    sampler = card["LengthGroupedBatches"](lengths, batch_size=3, pool_batches=2)
    loader = DataLoader(train, batch_sampler=sampler, collate_fn=card["make_collate"](processor))
    seen = []
    for indices, batch in zip(sampler, loader):
        assert batch["attention_mask"].sum(dim=1).tolist() == [lengths[i] for i in indices]
        assert batch["input_ids"].shape[1] == max(lengths[i] for i in indices)
        seen += indices
    assert sorted(seen) == list(range(len(train)))  # every row once
    shuffled = list(range(len(train)))
    random.Random(0).shuffle(shuffled)
    random_batches = [shuffled[i:i + 3] for i in range(0, len(shuffled), 3)]
    assert padding(lengths, list(sampler)) < padding(lengths, random_batches)


def test_length_batches_epochs_and_ranks(card, train):
    lengths = train["length"][:]
    make = card["LengthGroupedBatches"]
    one = make(lengths, batch_size=2)
    first = list(one)
    assert list(make(lengths, batch_size=2)) == first  # the same seed, the same order
    one.set_epoch(1)
    assert list(one) != first and sorted(sum(list(one), [])) == sorted(sum(first, []))
    ranks = [make(lengths, batch_size=2, rank=rank, world_size=3) for rank in range(3)]
    shares = [list(rank) for rank in ranks]
    assert len({len(share) for share in shares}) == 1 and all(len(rank) == len(shares[0]) for rank in ranks)
    rows = [row for share in shares for batch in share for row in batch]
    assert len(rows) == len(set(rows)) > len(lengths) - 3 * 2  # disjoint; at most the uneven batches left out


def test_length_batches_refuse_more_ranks_than_batches(card):
    """Each rank takes len(batches) // world_size batches: with fewer batches than ranks every rank would get none,
    and the training would end at once without a word."""
    make = card["LengthGroupedBatches"]
    with pytest.raises(ValueError, match="9 rows make 5 batches of 2, fewer than the 8 ranks"):
        make([10] * 9, batch_size=2, rank=0, world_size=8)
    assert [len(make([10] * 9, batch_size=2, rank=rank, world_size=5)) for rank in range(5)] == [1] * 5


def test_packs_hold_every_row_once_within_the_budget(card, train):
    lengths = train["length"][:]
    budget = 2 * max(lengths) + 1
    groups = card["packs"](lengths, budget)
    assert sorted(row for group in groups for row in group) == list(range(len(lengths)))
    totals = [sum(lengths[row] for row in group) for group in groups]
    assert max(totals) <= budget and len(groups) < len(lengths)
    # A row opens a pack only when it fits in no open one: so no two packs could have been one.
    assert all(a + b > budget for i, a in enumerate(totals) for b in totals[i + 1:])
    oversize = card["packs"]([5, 30, 7, 9], 16)  # best fit: 7 fills 9's pack; 30, over the budget, is alone
    assert sorted(map(sorted, oversize)) == [[0], [1], [2, 3]]
