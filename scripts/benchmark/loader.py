"""The card's training streams through DataLoader workers, one recipe per subprocess, for
scripts/bench.py (scripts/benchmark/streams.py runs the matrix and prints it).

A training node runs many DataLoader workers, so what one worker holds decides how much RAM the
data path takes. The recipes are the README's own snippets, run as they are (`stream`, `ddp`,
`mixture`), and datasets' plain `shuffle(seed, buffer_size)` ("shuffled"). Three measurements,
each in a fresh process:
  loader     the train split through `DataLoader(num_workers=2)`, images decoded: peak RSS of every
             worker (VmHWM from /proc/self/status, read inside the worker by the collate function
             after each batch, so the last value is the peak), the parent's RSS when the workers
             fork (their VmHWM includes it), rows/s, rows per CPU-second, time to the first batch,
             and the shuffle quality of that one pass;
  first-row  seconds from `iter(loader)` to the first row (batch size 1, image decoded): the wait
             before training starts, paid again by every worker at every epoch;
  quality    the order of the row ids only (images are not read), for several seeds: the rank
             correlation between a row's position in the stream and in file order (0: no trace of
             file order) and how many shard files 256 consecutive rows come from (higher: better mixed).
Layouts are compared by rewriting the same rows: other row-group sizes (`rewrite_row_groups`) and the
export as issue 13 found it, 8 shards of one row group each (`rewrite_as_filed`).

The cheapest measurement of one recipe, on a build the benchmark kept (`scripts/bench.py --keep`):
    python scripts/benchmark/loader.py loader /tmp/arr_coc_bench/repo-coco-np1 stream 64
"""

import json
import os
import sys
import time
from typing import Optional

SCRIPTS = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REPO_ROOT = os.path.dirname(SCRIPTS)
if SCRIPTS not in sys.path:  # run by path as a child process: `benchmark` and `readme_snippets` live in scripts/
    sys.path.insert(0, SCRIPTS)

from benchmark.measure import proc_status_bytes  # noqa: E402
from readme_snippets import run_readme_snippets  # noqa: E402

RECIPES = ("shuffled", "stream", "ddp", "mixture")
MIXTURE_WEIGHTS = {"vqav2": 0.5, "gqa": 0.3, "okvqa": 0.2, "coco": 0.3}  # sources a build lacks are left out
NUM_WORKERS = 2
BATCH_SIZE = 8
WINDOW = 256


def recipe_stream(recipe: str, repo: str, buffer_size: int, seed: int = 0):
    """The train stream a recipe gives on one rank of one (world_size 1)."""
    import datasets

    if recipe == "shuffled":  # datasets' plain shuffle: the card's recipe when issue 13 was filed
        stream = datasets.load_dataset(repo, "full", split="train", streaming=True)
        return stream.shuffle(seed=seed, buffer_size=buffer_size) if buffer_size else stream
    if recipe == "stream":  # the card's recommended stream (# snippet: stream)
        return run_readme_snippets("stream")["train_stream"](repo, seed=seed, buffer_size=buffer_size)
    if recipe == "ddp":
        return run_readme_snippets("ddp")["rank_stream"](repo, "full", 0, 1, seed=seed, buffer_size=buffer_size)
    if recipe == "mixture":
        infos = datasets.get_dataset_infos(repo)
        weights = {source: weight for source, weight in MIXTURE_WEIGHTS.items() if source in infos}
        return run_readme_snippets("mixture")["mixture_stream"](repo, weights, seed, buffer_size=buffer_size)
    raise ValueError(f"unknown recipe {recipe!r}; expected one of {RECIPES}")


def _cpu_seconds() -> float:
    """User + system CPU time of this process and of its finished (reaped) children."""
    times = os.times()
    return times.user + times.system + times.children_user + times.children_system


def collate_with_peak(batch: list[dict]) -> tuple:
    """Runs in the worker: (worker id, its VmHWM so far, the rows' ids). Touches every image, as a
    training collator would."""
    import torch.utils.data

    for row in batch:
        image = row["image"]
        if hasattr(image, "load"):
            image.load()
    info = torch.utils.data.get_worker_info()
    return (info.id if info else -1), proc_status_bytes("VmHWM"), [row["id"] for row in batch]


def file_order(repo: str) -> tuple[dict, list[str]]:
    """row id -> (its position in file order, its shard file index) over the train files."""
    import glob

    import pyarrow.parquet as pq

    files = sorted(glob.glob(os.path.join(repo, "data", "full", "train-*.parquet")))
    positions, position = {}, 0
    for index, path in enumerate(files):
        for row_id in pq.read_table(path, columns=["id"]).column("id").to_pylist():
            positions.setdefault(row_id, (position, index))
            position += 1
    return positions, files


def rank_correlation(xs: list[float], ys: list[float]) -> Optional[float]:
    """Spearman's rho (ranks by order of value; the positions here have no ties)."""
    import numpy as np

    if len(xs) < 3:
        return None
    rx = np.argsort(np.argsort(np.asarray(xs)))
    ry = np.argsort(np.argsort(np.asarray(ys)))
    return float(np.corrcoef(rx, ry)[0, 1])


def shards_per_window(shard_indices: list[int], window: int = WINDOW) -> Optional[float]:
    """Mean number of distinct shard files among `window` consecutive rows (whole windows only)."""
    counts = [len(set(shard_indices[start : start + window])) for start in range(0, len(shard_indices) - window + 1, window)]
    return sum(counts) / len(counts) if counts else None


def order_quality(ids: list[str], positions: dict) -> tuple[Optional[float], Optional[float]]:
    """(rank correlation between stream and file order, shard files per WINDOW consecutive rows)."""
    return (rank_correlation(list(range(len(ids))), [positions[row_id][0] for row_id in ids]),
            shards_per_window([positions[row_id][1] for row_id in ids]))  # fmt: skip


def prepare_streaming_child() -> None:
    """What every child does before it streams."""
    import datasets
    import torch  # noqa: F401 - a training process has imported it long before it streams

    datasets.disable_progress_bars()
    # datasets 5.2 sleeps 5 s at the end of each worker's shuffled pass; not a cost of the data path.
    datasets.config.SLEEP_TIME_ON_THREADS_SHUTDOWN = 0


def child_loader(repo: str, recipe: str, buffer_size: str, max_rows: str = "0") -> dict:
    """One recipe and buffer size through DataLoader workers; the figures as a dict."""
    prepare_streaming_child()
    from torch.utils.data import DataLoader

    positions, files = file_order(repo)
    limit = int(max_rows) or len(positions)
    stream = recipe_stream(recipe, repo, int(buffer_size))
    parent_rss = proc_status_bytes("VmRSS")
    loader = DataLoader(stream, batch_size=BATCH_SIZE, num_workers=NUM_WORKERS, collate_fn=collate_with_peak)
    peaks: dict[int, int] = {}
    ids: list[str] = []
    cpu_before = _cpu_seconds()
    started = time.perf_counter()
    first_batch = None
    batches = iter(loader)
    for worker, peak, batch_ids in batches:
        if first_batch is None:
            first_batch = time.perf_counter() - started
        peaks[worker] = max(peaks.get(worker, 0), peak)
        ids.extend(batch_ids)
        if len(ids) >= limit:
            break
    seconds = time.perf_counter() - started
    del batches  # stops and reaps the workers, so their CPU time is counted
    cpu_seconds = _cpu_seconds() - cpu_before
    correlation, window = order_quality(ids, positions)
    return {
        "recipe": recipe,
        "buffer_size": int(buffer_size),
        "num_workers": NUM_WORKERS,
        "num_shards": stream.num_shards,
        "row_groups_per_file": _row_groups(files[0]) if files else 0,
        "rows": len(ids),
        "seconds": seconds,
        "rows_per_s": len(ids) / seconds if seconds else 0.0,
        # CPU time of this process and its reaped workers: unlike rows/s, not diluted by other load.
        "rows_per_cpu_s": len(ids) / cpu_seconds if cpu_seconds else 0.0,
        "first_batch_s": first_batch,
        "parent_rss_mb": parent_rss / 1e6,
        "worker_peak_rss_mb": {str(worker): peak / 1e6 for worker, peak in sorted(peaks.items())},
        "rank_correlation": correlation,
        "shards_per_256_rows": window,
    }


def _row_groups(path: str) -> int:
    import pyarrow.parquet as pq

    return pq.ParquetFile(path).metadata.num_row_groups


def rewrite_row_groups(source_repo: str, target_repo: str, row_group_bytes: int) -> None:
    """A copy of a built repository whose shards hold the same rows in row groups of about
    `row_group_bytes` (pyarrow, page index and the features metadata kept)."""
    import glob
    import shutil

    import pyarrow.parquet as pq

    sys.path.insert(0, REPO_ROOT)
    from arr_coc.publish.export import row_group_rows

    shutil.rmtree(target_repo, ignore_errors=True)
    shutil.copytree(source_repo, target_repo, ignore=shutil.ignore_patterns("*.parquet"))
    for path in glob.glob(os.path.join(source_repo, "data", "*", "*.parquet")):
        table = pq.read_table(path)
        rows = row_group_rows(table.num_rows, table.nbytes, row_group_bytes)
        target = os.path.join(target_repo, os.path.relpath(path, source_repo))
        pq.write_table(table, target, row_group_size=rows, write_page_index=True)


def rewrite_as_filed(source_repo: str, target_repo: str, num_shards: int = 8) -> None:
    """A copy of a built repository laid out as the export wrote it when issue 13 was filed: every
    split of `full` in `num_shards` files of one row group each, sources mixed in file order, and a
    card with the `full` config only (the per-source globs match no file here). Today's recipe on
    this layout is the baseline the recipes are measured against."""
    import glob
    import shutil

    import pyarrow as pa
    import pyarrow.parquet as pq
    from huggingface_hub import DatasetCard, DatasetCardData

    shutil.rmtree(target_repo, ignore_errors=True)
    shutil.copytree(source_repo, target_repo, ignore=shutil.ignore_patterns("*.parquet"))
    for split in ("train", "validation"):
        files = sorted(glob.glob(os.path.join(source_repo, "data", "full", f"{split}-*.parquet")))
        if not files:
            continue
        table = pa.concat_tables([pq.read_table(path) for path in files])
        rows_per_shard = -(-table.num_rows // num_shards)
        for index in range(num_shards):
            part = table.slice(index * rows_per_shard, rows_per_shard)
            name = f"{split}-{index:05d}-of-{num_shards:05d}.parquet"
            pq.write_table(part, os.path.join(target_repo, "data", "full", name), row_group_size=max(1, part.num_rows),
                           write_page_index=True)  # fmt: skip
    card_path = os.path.join(target_repo, "README.md")
    card = DatasetCard.load(card_path)
    data = card.data.to_dict()
    data["configs"] = [entry for entry in data["configs"] if entry["config_name"] == "full"]
    data["dataset_info"] = [entry for entry in data["dataset_info"] if entry["config_name"] == "full"]
    card.data = DatasetCardData(**data)
    card.save(card_path)


def child_first_row(repo: str, recipe: str, buffer_size: str) -> dict:
    """Seconds from `iter(loader)` to the first row out of a 2-worker DataLoader, image decoded."""
    prepare_streaming_child()
    from torch.utils.data import DataLoader

    stream = recipe_stream(recipe, repo, int(buffer_size))
    loader = DataLoader(stream, batch_size=1, num_workers=NUM_WORKERS, collate_fn=collate_with_peak)
    started = time.perf_counter()
    batches = iter(loader)
    next(batches)
    seconds = time.perf_counter() - started
    del batches
    return {"recipe": recipe, "buffer_size": int(buffer_size), "first_row_s": seconds}


def child_quality(repo: str, recipe: str, buffer_size: str, seeds: str) -> dict:
    """Shuffle quality over seeds 0..seeds-1: each pass through 2 DataLoader workers, ids only (the
    order does not depend on the columns read)."""
    prepare_streaming_child()
    from torch.utils.data import DataLoader

    positions, _ = file_order(repo)
    correlations, windows = [], []
    for seed in range(int(seeds)):
        stream = recipe_stream(recipe, repo, int(buffer_size), seed=seed).select_columns(["id"])
        loader = DataLoader(stream, batch_size=64, num_workers=NUM_WORKERS, collate_fn=_ids)
        correlation, window = order_quality([row_id for batch in loader for row_id in batch], positions)
        correlations.append(correlation)
        windows.append(window)
    return {"recipe": recipe, "buffer_size": int(buffer_size), "seeds": int(seeds), "rank_correlations": correlations,
            "shards_per_256_rows": windows}  # fmt: skip


def _ids(batch: list[dict]) -> list[str]:
    return [row["id"] for row in batch]


CHILDREN = {"loader": child_loader, "first-row": child_first_row, "quality": child_quality}

if __name__ == "__main__":  # python scripts/benchmark/loader.py loader|first-row|quality REPO RECIPE BUFFER [MAX_ROWS | SEEDS]
    print(json.dumps(CHILDREN[sys.argv[1]](*sys.argv[2:])))
