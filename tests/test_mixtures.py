"""The card's "Mixtures" recipe (`# snippet: mixture`) over a `full` build's per-source configs:
the weights hold, the seed fixes the sequence, an all_exhausted epoch reaches every row, resuming
is exact, and under a real 2-process torchrun with DataLoader workers the ranks stay disjoint and
each follows the weights.

Row ids start with their source ("vqav2/train2014/..."), so a row's source is read from its id.
"""

import inspect
import itertools
import json
import math
import os
import shutil
import socket
import subprocess
import sys
from collections import Counter

import datasets
import pyarrow.parquet as pq
import pytest
from helpers import ROOT, make_mirror, readme_snippets, run_readme_snippets
from torch.utils.data import DataLoader

import build
import stream_ddp
from arr_coc.schema import SOURCES

STREAM_DDP = os.path.join(ROOT, "scripts", "stream_ddp.py")
WEIGHTS = {"vqav2": 0.5, "gqa": 0.2, "okvqa": 0.1, "coco": 0.2}
# Train rows per source: VQAv2 and GQA images carry 5 questions, one row each (--turns-per-example 1);
# OK-VQA has one question per image, COCO one caption row per image.
IMAGES = {"vqav2": 400, "gqa": 100, "okvqa": 100, "coco": 200}
ROWS = {"vqav2": 2000, "gqa": 500, "okvqa": 100, "coco": 200}
DRAWS = 2000  # <= VQAv2's rows: an all_exhausted epoch cannot end before VQAv2's 2000 rows are drawn
# Each source's count among N draws is Binomial(N, p). We allow |share - p| <= Z * sqrt(p (1 - p) / N):
# by the normal approximation a correct mixture fails one source's check with probability
# 2 * Phi(-4) = 6e-5 (the seeds are fixed, so a run's outcome is reproducible anyway), while mixing by
# size instead of by weight (VQAv2 2000 / 2800 = 0.71 against 0.5) fails it by far.
Z = 4.0


def tolerance(p: float, n: int) -> float:
    return Z * math.sqrt(p * (1 - p) / n)


def assert_follows_weights(ids: list[str], weights: dict) -> None:
    counts = Counter(row_id.split("/", 1)[0] for row_id in ids)
    total = sum(weights.values())
    for source, weight in weights.items():
        p = weight / total
        assert abs(counts[source] / len(ids) - p) <= tolerance(p, len(ids)), (source, counts[source], len(ids), p)


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    mirror = tmp_path_factory.mktemp("mixture-mirror")
    images = {source: {"train": count, "validation": 4} for source, count in IMAGES.items()}
    make_mirror(mirror, images=images, questions_per_image=5, image_size=(16, 12), broken=False)
    path = tmp_path_factory.mktemp("mixture-repo")
    # Leakage control off: the generated GQA images that overlap COCO would be skipped, and these
    # tests need each source's row count as set here.
    args = ["--config", "full", "--data-dir", str(mirror), "--output-dir", str(path), "--turns-per-example", "1", "--no-decontaminate"]
    assert build.main(args) == 0
    return path


@pytest.fixture(scope="module")
def rows(repo) -> dict:
    """source -> its train row ids, read from the shard files with pyarrow."""
    by_source = {}
    for source in SOURCES:
        paths = sorted((repo / "data" / "full").glob(f"train-*-{source}.parquet"))
        by_source[source] = [row_id for path in paths for row_id in pq.read_table(path, columns=["id"]).column("id").to_pylist()]
    assert {source: len(ids) for source, ids in by_source.items()} == ROWS
    return by_source


@pytest.fixture(autouse=True)
def no_shutdown_sleep(monkeypatch):
    # datasets 5.2 sleeps 5 s at the end of every pass over Parquet sources (a pyarrow crash guard).
    monkeypatch.setattr(datasets.config, "SLEEP_TIME_ON_THREADS_SHUTDOWN", 0)


@pytest.fixture(scope="module")
def mixture_stream():
    return run_readme_snippets("mixture")["mixture_stream"]


def ids_of(dataset) -> list[str]:
    return [row["id"] for row in dataset.select_columns(["id"])]


def test_the_snippet_is_the_code_stream_ddp_runs():
    assert inspect.getsource(stream_ddp.mixture_stream) in readme_snippets()["mixture"]


def test_mixture_follows_the_weights_and_an_epoch_reaches_every_row(repo, rows, mixture_stream):
    assert abs(ROWS["vqav2"] / sum(ROWS.values()) - 0.5) > tolerance(0.5, DRAWS)  # the check can tell
    epoch = ids_of(mixture_stream(str(repo), WEIGHTS, seed=42, buffer_size=256))
    assert len(epoch) >= DRAWS
    assert_follows_weights(epoch[:DRAWS], WEIGHTS)
    # all_exhausted: every row of every source at least once; the small sources repeat.
    assert set(epoch) == {row_id for ids in rows.values() for row_id in ids}
    repeats = Counter(epoch)
    assert max(repeats[row_id] for row_id in rows["okvqa"]) > 1


def test_the_same_seed_gives_the_same_sequence(repo, mixture_stream):
    def first(seed, epoch=0):
        # set_epoch on the dataset that is iterated: select_columns returns one at epoch 0 (datasets 5.2)
        stream = mixture_stream(str(repo), WEIGHTS, seed=seed, buffer_size=64).select_columns(["id"])
        stream.set_epoch(epoch)
        return [row["id"] for row in itertools.islice(stream, 300)]

    epoch0 = first(7)
    assert epoch0 == first(7)
    assert epoch0 != first(8)
    assert epoch0 != first(7, epoch=1)  # new source draws and shuffle every epoch


def test_first_exhausted_stops_at_the_first_used_up_source_without_repeats(repo, rows, mixture_stream):
    epoch = ids_of(mixture_stream(str(repo), {**WEIGHTS, "coco": 0}, seed=1, buffer_size=0, stopping_strategy="first_exhausted"))
    assert len(set(epoch)) == len(epoch)
    assert not any(row_id.startswith("coco/") for row_id in epoch)  # weight 0: left out
    read = {source: sum(row_id.startswith(source + "/") for row_id in epoch) for source in ("vqav2", "gqa", "okvqa")}
    assert [source for source in read if read[source] == ROWS[source]] == ["okvqa"]  # 100 / 0.125 = 800 rows


def test_resuming_a_mixture_without_shuffle_gives_exactly_the_remaining_rows(repo, mixture_stream):
    def make():
        return mixture_stream(str(repo), WEIGHTS, seed=3, buffer_size=0).select_columns(["id"])

    full = [row["id"] for row in make()]
    # 1001: past the mixture's first batch of 1,000 source draws; 2500: after OK-VQA and COCO were
    # used up and restarted (about 1,000 draws each).
    for stop_after in (1001, 2500):
        stream, before = make(), []
        for row in stream:
            before.append(row["id"])
            if len(before) == stop_after:
                state = stream.state_dict()
                break
        resumed = make()
        resumed.load_state_dict(json.loads(json.dumps(state)))  # as a checkpoint file would store it
        assert before + [row["id"] for row in resumed] == full, stop_after


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_torchrun_two_ranks_with_workers_are_disjoint_and_each_follows_the_weights(repo, rows, tmp_path):
    out = tmp_path / "ids"
    mixture = ",".join(f"{source}={weight}" for source, weight in WEIGHTS.items())
    command = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
        "--master-addr=127.0.0.1", f"--master-port={free_port()}",
        STREAM_DDP, "--repo", str(repo), "--mixture", mixture, "--seed", "5", "--shuffle-buffer", "64",
        "--num-workers", "2", "--no-decode", "--shutdown-sleep", "0", "--ids-out", str(out), "--check",
    ]  # fmt: skip
    # gloo on the loopback interface only: nothing may leave 127.0.0.1.
    env = {**os.environ, "GLOO_SOCKET_IFNAME": "lo", "OMP_NUM_THREADS": "1"}
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-3000:]
    per_rank = [(out / f"ids-epoch0-rank{rank}.txt").read_text().splitlines() for rank in (0, 1)]
    assert not set(per_rank[0]) & set(per_rank[1])
    assert set(per_rank[0]) | set(per_rank[1]) == {row_id for ids in rows.values() for row_id in ids}
    for ids in per_rank:
        # Each rank holds 4 of VQAv2's 8 shards (1,000 rows), so its epoch has at least 1,000 draws,
        # 500 from each of its workers' independent draws.
        assert len(ids) >= ROWS["vqav2"] // 2
        assert_follows_weights(ids[: ROWS["vqav2"] // 2], WEIGHTS)
    assert "source shares" in result.stderr and "check: 0 rows repeated across ranks" in result.stderr
    assert f"{sum(ROWS.values())} distinct rows of {sum(ROWS.values())}" in result.stderr


ROW_GROUP_ROWS = {"vqav2": 50, "gqa": 25, "okvqa": 7, "coco": 10}  # the build's 8 files per source: 40, 24, 16, 24


@pytest.fixture(scope="module")
def row_group_repo(repo, tmp_path_factory):
    """The same build with the train shards rewritten in smaller row groups: the build's ~3 MB row
    groups hold whole files of these tiny images, so there `reshard()` changes nothing."""
    path = tmp_path_factory.mktemp("mixture-repo-row-groups") / "repo"
    shutil.copytree(repo, path)
    for source, group_rows in ROW_GROUP_ROWS.items():
        for shard in (path / "data" / "full").glob(f"train-*-{source}.parquet"):
            pq.write_table(pq.read_table(shard), shard, row_group_size=group_rows)
    return path


def test_ranks_take_whole_row_groups_of_every_source_disjoint_and_complete(row_group_repo, rows, mixture_stream):
    groups = {
        source: sum(pq.ParquetFile(path).num_row_groups for path in (row_group_repo / "data" / "full").glob(f"train-*-{source}.parquet"))
        for source in SOURCES
    }  # fmt: skip
    smallest = min(groups.values())
    assert mixture_stream(str(row_group_repo), WEIGHTS, seed=5).num_shards == smallest == 16  # row groups, not files
    for epoch in (0, 1):
        per_rank = []
        for rank in range(3):  # 3 ranks do not divide 16 row groups: strategy="shards" still splits them whole
            stream = mixture_stream(str(row_group_repo), WEIGHTS, seed=5, rank=rank, world_size=3, buffer_size=16)
            stream = stream.select_columns(["id"])
            stream.set_epoch(epoch)
            loader = DataLoader(stream, batch_size=8, num_workers=2, collate_fn=lambda batch: [row["id"] for row in batch])
            per_rank.append({row_id for batch in loader for row_id in batch})
        assert sum(map(len, per_rank)) == len(set().union(*per_rank))  # no row on two ranks
        assert set().union(*per_rank) == {row_id for ids in rows.values() for row_id in ids}  # all_exhausted: every row
    # More ranks than the smallest source has row groups: datasets refuses the split.
    with pytest.raises(ValueError, match="some nodes would not be assigned any shard"):
        mixture_stream(str(row_group_repo), WEIGHTS, seed=5, rank=0, world_size=smallest + 1)
