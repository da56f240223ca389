"""The card's training recipes run with the real trainers: TRL's SFTTrainer, the Qwen3-VL processor and a
plain PyTorch loop, on a built `small` config loaded the way users load it, offline, on CPU.

The model, tokenizer and processor are built in the test (tests/tiny_qwen.py); nothing is downloaded, and
every connection beyond 127.0.0.1 is refused while these tests run."""

import math
import re
import socket

import datasets
import huggingface_hub
import pytest
import torch
from helpers import make_mirror, run_readme_snippets
from tiny_qwen import expected_image_tokens, tiny_model, tiny_processor, train_tokenizer, vision_weights
from torch.utils.data import DataLoader
from trl import SFTConfig
from trl.trainer.sft_trainer import DataCollatorForVisionLanguageModeling

import build

TURN = re.compile(r"<\|im_start\|>(user|assistant)\n(.*?)<\|im_end\|>", re.S)
VISION = re.compile(r"<\|vision_start\|>(?:<\|image_pad\|>)+<\|vision_end\|>")
ANSWER_END = "<|im_end|>\n"  # what the Qwen3-VL template writes after every turn
TRAIN_ARGS = dict(per_device_train_batch_size=2, learning_rate=1e-2, logging_steps=1, report_to="none",
                  save_strategy="no", seed=0, disable_tqdm=True)

# 2 DataLoader workers per simulated rank on a 2-core machine is the point of the test, not a mistake.
pytestmark = pytest.mark.filterwarnings("ignore:This DataLoader will create:UserWarning")


def _refuse_remote(connect):
    def guarded(sock, address):
        if sock.family in (socket.AF_INET, socket.AF_INET6) and address[0] not in ("127.0.0.1", "::1", "localhost"):
            raise OSError(f"test_trainers runs offline: connection to {address[0]} refused")
        return connect(sock, address)
    return guarded


@pytest.fixture(scope="module", autouse=True)
def offline():
    """No network: the hub libraries in offline mode, and any non-loopback connection refused."""
    with pytest.MonkeyPatch.context() as patch:
        for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE"):
            patch.setenv(name, "1")
        # The libraries read these at import time, before this module ran.
        patch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
        patch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
        patch.setattr(socket.socket, "connect", _refuse_remote(socket.socket.connect))
        # datasets 5.2 sleeps 5 s after every shuffled Parquet pass; forked DataLoader workers inherit the 0.
        patch.setattr(datasets.config, "SLEEP_TIME_ON_THREADS_SHUTDOWN", 0)
        # A ~150k-parameter model gains nothing from intra-op threads, and on a shared machine they make
        # every small op wait for the busy cores.
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        yield
        torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    """A built `small` config: 16 train rows in 8 shards, multi-turn VQA rows, grayscale and CMYK JPEGs."""
    mirror = tmp_path_factory.mktemp("trainers-mirror")
    make_mirror(mirror, images_per_split=6, questions_per_image=3)
    path = tmp_path_factory.mktemp("trainers-repo")
    args = ["--config", "small", "--data-dir", str(mirror), "--output-dir", str(path),
            "--max-images-train", "12", "--max-images-validation", "4"]
    assert build.main(args) == 0
    return path


@pytest.fixture(scope="module")
def rows(repo):
    return datasets.load_dataset(str(repo), "small", split="train")


@pytest.fixture(scope="module")
def processor(rows):
    texts = [turn["content"] for conversation in rows["conversations"] for turn in conversation]
    return tiny_processor(train_tokenizer(texts))


@pytest.fixture(scope="module")
def card():
    """The README's recipes, run as written: one namespace, in the card's order."""
    return run_readme_snippets("trl", "sft", "qwen", "collate", "ddp")


def turns_of(row) -> tuple:
    return tuple((turn["role"], turn["content"]) for turn in row["conversations"])


def turns_in(ids, tokenizer) -> tuple:
    """The (role, content) turns a row of input_ids spells, with its image block taken out."""
    return tuple((role, VISION.sub("", content)) for role, content in TURN.findall(tokenizer.decode(ids)))


def labelled_spans(ids, labels, tokenizer) -> list[str]:
    """The text of each run of positions that carry a label."""
    spans, current = [], []
    for token, label in zip(ids.tolist(), labels.tolist()):
        if label != -100:
            assert label == token
            current.append(token)
        elif current:
            spans.append(current)
            current = []
    if current:
        spans.append(current)
    return [tokenizer.decode(span) for span in spans]


def check_batch(batch, processor, answers_only: bool) -> list[tuple]:
    """Asserts what every batch must satisfy; returns the conversations it holds."""
    tokenizer = processor.tokenizer
    image_token = tokenizer.convert_tokens_to_ids("<|image_pad|>")
    per_row = (batch["input_ids"] == image_token).sum(dim=1)
    assert per_row.tolist() == expected_image_tokens(batch, processor).tolist()  # one image per row
    assert batch["pixel_values"].shape[0] == batch["image_grid_thw"].prod(dim=-1).sum()
    conversations = []
    for ids, labels in zip(batch["input_ids"], batch["labels"]):
        turns = turns_in(ids, tokenizer)
        conversations.append(turns)
        if answers_only:
            answers = [content + ANSWER_END for role, content in turns if role == "assistant"]
            assert labelled_spans(ids, labels, tokenizer) == answers
            assert not (labels == image_token).any()
    return conversations


def record_batches(model) -> list[dict]:
    """Every batch the model is called with, as the trainer passes it."""
    batches = []

    def keep(module, args, kwargs):
        batches.append({key: value.detach().clone() for key, value in kwargs.items() if torch.is_tensor(value)})

    model.register_forward_pre_hook(keep, with_kwargs=True)
    return batches


def step_losses(trainer) -> list[float]:
    return [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]


def assert_all_changed(before: dict, model) -> None:
    after = vision_weights(model)
    unchanged = [name for name in before if torch.equal(before[name], after[name])]
    assert unchanged == []


def test_the_rows_hold_grayscale_cmyk_and_multi_turn_conversations(rows):
    modes = [image.mode for image in rows["image"]]
    assert {"L", "CMYK", "RGB"} <= set(modes)
    assert max(len(conversation) for conversation in rows["conversations"]) >= 6  # 3 question/answer pairs
    assert len(set(map(turns_of, rows))) == len(rows)  # conversations identify rows below


def test_sft_trainer_map_style_trains_a_full_epoch(card, rows, processor, tmp_path):
    model = tiny_model(processor.tokenizer)
    before, batches = vision_weights(model), record_batches(model)
    trainer = card["sft_trainer"](model, processor, rows, str(tmp_path), answers_only=False, on_cpu=True,
                                  num_train_epochs=1, **TRAIN_ARGS)
    trainer.train()
    losses = step_losses(trainer)
    assert len(losses) == len(batches) == math.ceil(len(rows) / 2) and all(map(math.isfinite, losses))
    seen = [turns for batch in batches for turns in check_batch(batch, processor, answers_only=False)]
    assert sorted(seen) == sorted(map(turns_of, rows))  # every row once, text intact, L and CMYK included
    assert_all_changed(before, model)


def test_sft_trainer_streams_shuffled_with_two_workers(card, repo, rows, processor, tmp_path):
    stream = datasets.load_dataset(str(repo), "small", split="train", streaming=True).shuffle(seed=0, buffer_size=8)
    model = tiny_model(processor.tokenizer)
    before, batches = vision_weights(model), record_batches(model)
    # An epoch is at most 10 batches (16 rows, 2 workers each ending on a part batch): 10 steps see every row.
    trainer = card["sft_trainer"](model, processor, stream, str(tmp_path), answers_only=False, on_cpu=True,
                                  max_steps=10, dataloader_num_workers=2, **TRAIN_ARGS)
    trainer.train()
    losses = step_losses(trainer)
    assert len(losses) == len(batches) == 10 and all(map(math.isfinite, losses))
    seen = {turns for batch in batches for turns in check_batch(batch, processor, answers_only=False)}
    assert seen == set(map(turns_of, rows))
    assert_all_changed(before, model)


def test_assistant_only_loss_labels_exactly_the_assistant_turns(card, rows, processor, tmp_path):
    model = tiny_model(processor.tokenizer)
    batches = record_batches(model)
    trainer = card["sft_trainer"](model, processor, rows, str(tmp_path), on_cpu=True, max_steps=3, **TRAIN_ARGS)
    # The collator TRL trains with, on every row of the split at once.
    examples = [dict(example) for example in card["to_trl"](rows)]
    everything = trainer.data_collator(examples)
    conversations = check_batch(everything, processor, answers_only=True)
    assert conversations == list(map(turns_of, rows))
    assert max(sum(role == "assistant" for role, _ in turns) for turns in conversations) == 3
    # The card's own collate function labels exactly the same tokens.
    ours = card["make_collate"](processor)(list(rows))
    assert torch.equal(ours["input_ids"], everything["input_ids"])
    assert torch.equal(ours["labels"], everything["labels"])
    trainer.train()
    losses = step_losses(trainer)
    assert len(losses) == len(batches) == 3 and all(map(math.isfinite, losses))
    for batch in batches:
        check_batch(batch, processor, answers_only=True)


def test_truncation_through_image_tokens_is_an_error(card, rows, processor, tmp_path):
    assert SFTConfig(output_dir=str(tmp_path), use_cpu=True).max_length == 1024  # why the recipe sets None
    collator = DataCollatorForVisionLanguageModeling(processor=processor, max_length=4)
    with pytest.raises(ValueError, match="Mismatch in `image` token count"):
        collator([dict(example) for example in card["to_trl"](rows.select(range(2)))])


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks TRL's defaults on a machine without a GPU")
def test_trl_defaults_refuse_a_cpu_only_machine(tmp_path):
    with pytest.raises(ValueError, match="use_cpu"):
        SFTConfig(output_dir=str(tmp_path))
    config = SFTConfig(output_dir=str(tmp_path), use_cpu=True, bf16=False)  # what on_cpu=True passes
    assert config.gradient_checkpointing and not config.bf16


def test_answer_only_loss_needs_the_original_template_or_markers(card, rows, processor, tmp_path):
    tokenizer = processor.tokenizer
    edited = tiny_processor(tokenizer)
    edited.chat_template = processor.chat_template + "\n"  # one trailing newline: no longer TRL's known text
    with pytest.raises(ValueError, match="not training-compatible"):
        card["sft_trainer"](tiny_model(tokenizer), edited, rows, str(tmp_path), on_cpu=True, max_steps=1, **TRAIN_ARGS)


def test_qwen_messages_go_through_apply_chat_template_and_the_model(card, rows, processor):
    model = tiny_model(processor.tokenizer)
    picked = {}
    for row in rows:
        kind = row["image"].mode if row["image"].mode != "RGB" else f"RGB-{len(row['conversations']) // 2}-turns"
        picked.setdefault(kind, row)
    assert {"L", "CMYK", "RGB-3-turns", "RGB-1-turns"} <= set(picked)
    for row in picked.values():
        inputs = processor.apply_chat_template(card["to_qwen_messages"](row), tokenize=True, return_dict=True,
                                               return_tensors="pt")
        assert turns_in(inputs["input_ids"][0], processor.tokenizer) == turns_of(row)
        image_tokens = (inputs["input_ids"] == processor.image_token_id).sum().item()
        assert image_tokens == expected_image_tokens(inputs, processor).item() > 0
        loss = model(**inputs, labels=inputs["input_ids"]).loss
        assert math.isfinite(loss.item())
        # Grayscale and CMYK: the processor converts to RGB itself, to exactly image.convert("RGB")'s pixels.
        as_rgb = processor.image_processor(images=[row["image"].convert("RGB")], return_tensors="pt")
        assert torch.equal(inputs["pixel_values"], as_rgb["pixel_values"])
        if row["image"].mode != "RGB":
            with pytest.raises(ValueError, match="mean must have"):
                processor.image_processor(images=[row["image"]], do_convert_rgb=False, return_tensors="pt")


def test_cap_pixels_bounds_the_image_tokens(card, rows, processor):
    from PIL import Image

    capped = tiny_processor(processor.tokenizer, max_pixels=1 << 24)
    photo = Image.new("RGB", (640, 480))
    grid = capped.image_processor(images=[photo], return_tensors="pt")["image_grid_thw"]
    assert expected_image_tokens({"image_grid_thw": grid}, capped).item() == 300  # a COCO-sized photo
    card["cap_pixels"](capped, max_pixels=100 * 32 * 32)
    grid = capped.image_processor(images=[photo], return_tensors="pt")["image_grid_thw"]
    assert 0 < expected_image_tokens({"image_grid_thw": grid}, capped).item() <= 100


def test_collate_recipe_trains_over_split_dataset_by_node(card, repo, rows, processor):
    model = tiny_model(processor.tokenizer)
    before = vision_weights(model)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    per_rank = []
    for rank in range(2):
        stream = card["rank_stream"](str(repo), "small", rank, 2, buffer_size=8)
        loader = DataLoader(stream, batch_size=2, num_workers=2, collate_fn=card["make_collate"](processor))
        seen = []
        for batch in loader:
            seen += check_batch(batch, processor, answers_only=True)
            loss = model(**batch).loss
            assert math.isfinite(loss.item())
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
        per_rank.append(seen)
    assert not set(per_rank[0]) & set(per_rank[1])
    assert sorted(per_rank[0] + per_rank[1]) == sorted(map(turns_of, rows))  # L and CMYK rows included
    assert_all_changed(before, model)
