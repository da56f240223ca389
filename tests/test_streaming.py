"""Streaming the exported repository into training: DataLoader workers, split_dataset_by_node,
shuffle + set_epoch, state_dict resume, and a real 2-process torchrun of scripts/stream_ddp.py.

Every test checks row ids against the shard files themselves (read with pyarrow, not datasets)."""

import json
import os
import shutil
import socket
import subprocess
import sys
from collections import Counter, defaultdict

import datasets
import pyarrow.parquet as pq
import pytest
import torch.utils.data
from datasets.distributed import split_dataset_by_node
from helpers import ROOT, SPLITS, make_mirror, run_readme_snippets
from torch.utils.data import DataLoader

import build
import stream_ddp

STREAM_DDP = os.path.join(ROOT, "scripts", "stream_ddp.py")
SHARDS_PER_SOURCE = 2  # --num-shards: 2 shards for each of the 4 sources' rows of a split
NUM_SHARDS = 4 * SHARDS_PER_SOURCE

# 4 workers on this 2-core machine is the point of the test, not a mistake.
pytestmark = pytest.mark.filterwarnings("ignore:This DataLoader will create:UserWarning")


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    mirror = tmp_path_factory.mktemp("stream-mirror")
    make_mirror(mirror, images_per_split=16, questions_per_image=2)
    path = tmp_path_factory.mktemp("stream-repo")
    args = ["--config", "small", "--data-dir", str(mirror), "--output-dir", str(path), "--num-shards", str(SHARDS_PER_SOURCE)]
    assert build.main(args) == 0
    return path


@pytest.fixture(scope="module")
def shards(repo) -> dict:
    """split -> the row ids of each shard file, in file order (read with pyarrow)."""
    files = {split: sorted((repo / "data" / "small").glob(f"{split}-*.parquet")) for split in SPLITS}
    return {split: [pq.read_table(path, columns=["id"]).column("id").to_pylist() for path in paths] for split, paths in files.items()}


@pytest.fixture
def no_shutdown_sleep(monkeypatch):
    # datasets 5.2 sleeps SLEEP_TIME_ON_THREADS_SHUTDOWN (5 s) after every shuffled Parquet pass
    # (a guard against a pyarrow thread-shutdown crash); harmless in training, slow in a test.
    # Forked DataLoader workers inherit the patched value.
    monkeypatch.setattr(datasets.config, "SLEEP_TIME_ON_THREADS_SHUTDOWN", 0)


def stream(repo, split="train") -> datasets.IterableDataset:
    return datasets.load_dataset(str(repo), "small", split=split, streaming=True).select_columns(["id"])


def collate_ids(batch):
    return [row["id"] for row in batch]


def collate_ids_by_worker(batch):
    return torch.utils.data.get_worker_info().id, [row["id"] for row in batch]


def loader_ids(dataset, num_workers: int, batch_size: int = 3) -> list:
    loader = DataLoader(dataset, batch_size=batch_size, num_workers=num_workers, collate_fn=collate_ids)
    return [row_id for batch in loader for row_id in batch]


def all_ids(shards, split="train") -> list:
    return [row_id for shard in shards[split] for row_id in shard]


def whole_shards(ids, shard_ids) -> list:
    """Indices of the shard files `ids` consists of; fails unless it is exactly a union of whole files."""
    owned = [index for index, shard in enumerate(shard_ids) if set(shard) & set(ids)]
    assert sorted(ids) == sorted(row_id for index in owned for row_id in shard_ids[index])
    return owned


def assert_exactly_once(parts: list, expected: list) -> None:
    """`parts` (per rank or worker) are disjoint and together hold every expected row once."""
    seen = Counter(row_id for part in parts for row_id in part)
    assert set(seen.values()) == {1}
    assert sorted(seen) == sorted(expected)


def test_num_shards_is_the_number_of_shard_files(repo, shards):
    for split in SPLITS:
        dataset = stream(repo, split)
        assert dataset.num_shards == len(shards[split]) == NUM_SHARDS
        assert [row["id"] for row in dataset] == all_ids(shards, split)  # files in order, rows in order
        assert min(map(len, shards[split])) >= 2


@pytest.mark.parametrize("num_workers", [2, 4])
def test_dataloader_workers_see_every_row_once_by_whole_shards(repo, shards, num_workers):
    # Whole rows (image bytes included) through the worker processes.
    dataset = datasets.load_dataset(str(repo), "small", split="train", streaming=True).decode(False)
    loader = DataLoader(dataset, batch_size=3, num_workers=num_workers, collate_fn=collate_ids_by_worker)
    per_worker = defaultdict(list)
    for worker, ids in loader:
        per_worker[worker].extend(ids)
    assert sorted(per_worker) == list(range(num_workers))
    assert_exactly_once(per_worker.values(), all_ids(shards))
    owned = [whole_shards(ids, shards["train"]) for ids in per_worker.values()]
    assert all(len(indices) == NUM_SHARDS // num_workers for indices in owned)


@pytest.mark.parametrize("world_size", [2, 4])
def test_split_dataset_by_node_gives_each_rank_whole_shards(repo, shards, world_size):
    per_rank = []
    for rank in range(world_size):
        node = split_dataset_by_node(stream(repo), rank=rank, world_size=world_size)
        assert node.num_shards == NUM_SHARDS // world_size
        # world_size x 2 workers <= 8 shards: every worker of every rank has a shard.
        ids = loader_ids(node, num_workers=2)
        assert len(whole_shards(ids, shards["train"])) == NUM_SHARDS // world_size
        per_rank.append(ids)
    assert_exactly_once(per_rank, all_ids(shards))


def test_world_size_not_dividing_the_shards_falls_back_to_one_row_in_n(repo, shards):
    expected = all_ids(shards)
    per_rank = [loader_ids(split_dataset_by_node(stream(repo), rank=rank, world_size=3), 0) for rank in range(3)]
    assert_exactly_once(per_rank, expected)
    # Every rank reads every shard and keeps every 3rd row: correct but 3x the reading.
    assert per_rank == [expected[rank::3] for rank in range(3)]


def test_strategy_shards_gives_whole_shards_when_world_size_does_not_divide(repo, shards):
    # README, "Training at scale": 104 shards of full train and 16 ranks; here 8 shards and 3 ranks.
    per_rank = [loader_ids(split_dataset_by_node(stream(repo), rank=rank, world_size=3, strategy="shards"), 0) for rank in range(3)]
    assert_exactly_once(per_rank, all_ids(shards))
    assert sorted(len(whole_shards(ids, shards["train"])) for ids in per_rank) == [2, 3, 3]


def shuffled_order(repo, epoch: int, num_workers: int, rank=None, world_size=None) -> list:
    dataset = stream(repo).shuffle(seed=7, buffer_size=16)
    if world_size:
        dataset = split_dataset_by_node(dataset, rank=rank, world_size=world_size)
    dataset.set_epoch(epoch)
    return loader_ids(dataset, num_workers)


@pytest.mark.parametrize("num_workers", [0, 2])
def test_shuffle_is_reproducible_and_set_epoch_changes_the_order(repo, shards, no_shutdown_sleep, num_workers):
    expected = all_ids(shards)
    epoch0 = shuffled_order(repo, 0, num_workers)
    assert epoch0 == shuffled_order(repo, 0, num_workers)  # a fresh dataset, the same seed: the same order
    assert sorted(epoch0) == sorted(expected) and epoch0 != loader_ids(stream(repo), num_workers)
    epoch1 = shuffled_order(repo, 1, num_workers)
    assert sorted(epoch1) == sorted(expected) and epoch1 != epoch0
    assert epoch1 == shuffled_order(repo, 1, num_workers)


def test_shuffled_ranks_stay_disjoint_and_complete_in_every_epoch(repo, shards, no_shutdown_sleep):
    assignments = []
    for epoch in (0, 1):
        per_rank = [shuffled_order(repo, epoch, 2, rank=rank, world_size=2) for rank in range(2)]
        assert_exactly_once(per_rank, all_ids(shards))
        assignments.append([sorted(whole_shards(ids, shards["train"])) for ids in per_rank])
    assert assignments[0] != assignments[1]  # the shards move between ranks from one epoch to the next


@pytest.mark.parametrize("world_size", [2, 4])
def test_accelerate_style_shard_gives_each_process_whole_shards(repo, shards, world_size):
    # What Accelerate's prepare_data_loader does with dispatch_batches=False (README, TRL / Accelerate).
    per_process = [loader_ids(stream(repo).shard(num_shards=world_size, index=index), 2) for index in range(world_size)]
    assert_exactly_once(per_process, all_ids(shards))
    assert all(len(whole_shards(ids, shards["train"])) == NUM_SHARDS // world_size for ids in per_process)


def test_readme_ddp_snippet_gives_disjoint_complete_ranks_every_epoch(repo, shards, no_shutdown_sleep):
    rank_stream = run_readme_snippets("ddp")["rank_stream"]
    for epoch in (0, 1):
        per_rank = []
        for rank in range(2):
            ranked = rank_stream(str(repo), "small", rank, 2, buffer_size=16).select_columns(["id"])
            ranked.set_epoch(epoch)
            per_rank.append(loader_ids(ranked, num_workers=2))
        assert_exactly_once(per_rank, all_ids(shards))


def test_readme_stream_snippet_shuffles_every_row_once_reproducibly(repo, shards, no_shutdown_sleep):
    train_stream = run_readme_snippets("stream")["train_stream"]

    def order(seed, num_workers):
        stream = train_stream(str(repo), "small", seed=seed, buffer_size=16).select_columns(["id"])
        return loader_ids(stream, num_workers)

    first = order(3, 2)
    assert first == order(3, 2) != order(4, 2)
    assert sorted(first) == sorted(all_ids(shards)) and first != all_ids(shards)
    assert sorted(order(3, 0)) == sorted(all_ids(shards))


@pytest.fixture(scope="module")
def row_group_repo(repo, tmp_path_factory):
    """The same repository with every shard file rewritten in row groups of 2 rows: the build's row
    groups (about 3 MB) hold whole files of these tiny test images, so there `reshard()` changes nothing."""
    path = tmp_path_factory.mktemp("stream-repo-row-groups") / "repo"
    shutil.copytree(repo, path)
    for shard in (path / "data" / "small").glob("*.parquet"):
        pq.write_table(pq.read_table(shard), shard, row_group_size=2)
    return path


def row_groups(repo, split="train") -> list:
    """The row ids of every Parquet row group of the split, file by file (read with pyarrow)."""
    groups = []
    for path in sorted((repo / "data" / "small").glob(f"{split}-*.parquet")):
        handle = pq.ParquetFile(path)
        groups += [handle.read_row_group(index, columns=["id"]).column("id").to_pylist() for index in range(handle.num_row_groups)]
    return groups


def test_readme_ddp_snippet_splits_whole_row_groups_among_ranks(row_group_repo, shards, no_shutdown_sleep):
    groups = row_groups(row_group_repo)
    assert len(groups) % 4 and len(groups) > 4 * 3  # 4 ranks do not divide them; 3 workers each have some
    assert datasets.load_dataset(str(row_group_repo), "small", split="train", streaming=True).reshard().num_shards == len(groups)
    rank_stream = run_readme_snippets("ddp")["rank_stream"]
    for epoch in (0, 1):
        per_rank = []
        for rank in range(4):
            ranked = rank_stream(str(row_group_repo), "small", rank, 4, buffer_size=8).select_columns(["id"])
            assert ranked.num_shards == len(range(rank, len(groups), 4))  # row groups, not files
            ranked.set_epoch(epoch)
            per_rank.append(loader_ids(ranked, num_workers=3))
        assert_exactly_once(per_rank, all_ids(shards))
        assert sorted(len(whole_shards(ids, groups)) for ids in per_rank) == sorted(len(range(rank, len(groups), 4)) for rank in range(4))


@pytest.mark.parametrize("epoch", [0, 1])
def test_state_dict_resume_of_resharded_stream_is_exact(row_group_repo, epoch):
    def resharded():
        return datasets.load_dataset(str(row_group_repo), "small", split="train", streaming=True).reshard().select_columns(["id"])

    for stop_after in (1, 2, 3, 25):  # inside the first row group, on its end, in the next one, further on
        full, before, after = resume(resharded, epoch, stop_after)
        assert before + after == full, stop_after


def resume(make_dataset, epoch: int, stop_after: int) -> tuple[list, list, list]:
    """(uninterrupted order, rows before the checkpoint, rows after resuming from it)."""
    dataset = make_dataset()
    dataset.set_epoch(epoch)
    full = [row["id"] for row in dataset]
    dataset = make_dataset()
    dataset.set_epoch(epoch)
    before, state = [], None
    for row in dataset:
        before.append(row["id"])
        if len(before) == stop_after:
            state = dataset.state_dict()
            break
    resumed = make_dataset()
    resumed.set_epoch(epoch)  # the state is bound to its epoch
    resumed.load_state_dict(json.loads(json.dumps(state)))  # as a checkpoint file would store it
    return full, before, [row["id"] for row in resumed]


@pytest.mark.parametrize("epoch", [0, 1])
def test_state_dict_resume_without_shuffle_is_exact(repo, shards, epoch):
    first = len(shards["train"][0])
    total = len(all_ids(shards))
    for stop_after in (1, first - 1, first, first + 1, total - 1, total):
        full, before, after = resume(lambda: stream(repo), epoch, stop_after)
        assert before + after == full, stop_after
    # The same on one rank of a split dataset.
    full, before, after = resume(lambda: split_dataset_by_node(stream(repo), rank=1, world_size=2), epoch, 5)
    assert before + after == full and len(whole_shards(full, shards["train"])) == NUM_SHARDS // 2


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def read_ids(path) -> list:
    return path.read_text().splitlines()


def test_torchrun_two_ranks_with_workers_are_disjoint_and_complete(repo, shards, tmp_path):
    out = tmp_path / "ids"
    command = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
        "--master-addr=127.0.0.1", f"--master-port={free_port()}",
        STREAM_DDP, "--repo", str(repo), "--config", "small", "--split", "train",
        "--num-workers", "2", "--epochs", "2", "--ids-out", str(out), "--check",
    ]  # fmt: skip
    # gloo on the loopback interface only: nothing may leave 127.0.0.1.
    env = {**os.environ, "GLOO_SOCKET_IFNAME": "lo", "OMP_NUM_THREADS": "1"}
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-3000:]
    orders = []
    for epoch in (0, 1):
        per_rank = [read_ids(out / f"ids-epoch{epoch}-rank{rank}.txt") for rank in (0, 1)]
        assert_exactly_once(per_rank, all_ids(shards))
        for ids in per_rank:
            assert len(whole_shards(ids, shards["train"])) == NUM_SHARDS // 2
        orders.append(per_rank)
    assert orders[0] != orders[1]  # set_epoch reorders the shards between epochs
    assert "rows per rank [" in result.stderr and "rows/s" in result.stderr
    assert "check: 0 rows repeated" in result.stderr and f"{len(all_ids(shards))} distinct rows of {len(all_ids(shards))}" in result.stderr


def test_stream_ddp_runs_without_torchrun(repo, shards, tmp_path, monkeypatch, caplog):
    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    out = tmp_path / "ids"
    args = ["--repo", str(repo), "--config", "small", "--split", "validation", "--num-workers", "2", "--ids-out", str(out), "--check"]
    with caplog.at_level("INFO", logger="stream_ddp"):
        assert stream_ddp.main(args) == 0
    assert_exactly_once([read_ids(out / "ids-epoch0-rank0.txt")], all_ids(shards, "validation"))
    assert "rows/s" in caplog.text and "rows per rank [" in caplog.text


@pytest.mark.parametrize("whole_shards", [False, True])
def test_stream_ddp_shard_rule_says_what_the_split_does_with_fewer_shards_than_ranks(repo, shards, caplog, whole_shards):
    # stream_ddp splits unshuffled streams with strategy="auto" and shuffled ones (the `ddp` snippet)
    # with strategy="shards"; its warning must describe what that split then does.
    world_size = NUM_SHARDS + 1
    with caplog.at_level("INFO", logger="stream_ddp"):
        stream_ddp.check_shard_rule(NUM_SHARDS, world_size, 0, 0, whole_shards=whole_shards)
    if whole_shards:
        with pytest.raises(ValueError, match="some nodes would not be assigned any shard"):
            split_dataset_by_node(stream(repo), rank=0, world_size=world_size, strategy="shards")
        assert "needs a shard for every rank and raises" in caplog.text
    else:
        per_rank = [loader_ids(split_dataset_by_node(stream(repo), rank=rank, world_size=world_size), 0) for rank in range(world_size)]
        assert all(per_rank)  # no rank is left without rows: every rank reads every shard
        assert_exactly_once(per_rank, all_ids(shards))
        assert f"every rank reads every shard and keeps 1 row in {world_size}" in caplog.text
    assert "get no shard" not in caplog.text


def test_stream_ddp_idle_worker_warning_counts_the_ranks_with_fewest_shards(repo, shards, caplog):
    # 8 whole shards over 3 ranks: 3, 3 and 2; with 3 workers only the rank with 2 has an idle one.
    per_rank = [split_dataset_by_node(stream(repo), rank=rank, world_size=3, strategy="shards").num_shards for rank in range(3)]
    assert sorted(per_rank) == [2, 3, 3]
    with caplog.at_level("INFO", logger="stream_ddp"):
        stream_ddp.check_shard_rule(NUM_SHARDS, 3, 3, 0, whole_shards=True)
    assert "ranks with 2 shards leave 1 of their 3 DataLoader workers idle" in caplog.text
    assert "8 shards, 2-3 per rank" in caplog.text
