"""Per-DataLoader-worker figures of the card's training streams, for scripts/bench.py.

A training node runs many DataLoader workers, so what one worker holds decides how much RAM the
data path takes. For each recipe the card recommends (the code is the README's own snippets, run
as they are; "shuffled" and "reshard" are the plain alternatives) and each shuffle buffer size, one child process streams the train split of a built
repository through `DataLoader(num_workers=2)` with images decoded and reports:
  peak RSS of every worker   VmHWM from /proc/self/status, read inside the worker by the collate
                             function (it runs there) after each batch, so the last value is the peak;
  parent RSS at the start    what a forked worker starts with (its VmHWM includes it);
  rows/s, first batch        from `iter(loader)`;
  shuffle quality            the rank correlation between a row's position in the stream and its
                             position in file order (0: no trace of file order), and how many shard
                             files 256 consecutive rows come from (higher: better mixed).
Row-group sizes are compared by rewriting the same shards with pyarrow (`rewrite_row_groups`).

The cheapest measurement of one recipe, on a build the benchmark kept (`scripts/bench.py --keep`):
    python scripts/bench_loader.py /tmp/arr_coc_bench/repo-coco-np1 stream 128
"""

import json
import os
import re
import sys
import time
from typing import Optional

HERE = os.path.dirname(os.path.abspath(__file__))
REPO_ROOT = os.path.dirname(HERE)

RECIPES = ("shuffled", "reshard", "stream", "ddp", "mixture")
MIXTURE_WEIGHTS = {"vqav2": 0.5, "gqa": 0.3, "okvqa": 0.2, "coco": 0.3}  # sources a build lacks are left out
NUM_WORKERS = 2
BATCH_SIZE = 8
WINDOW = 256


def readme_snippet(name: str) -> dict:
    """Run the README's `# snippet: <name>` block and return its namespace: the card's own code."""
    with open(os.path.join(REPO_ROOT, "README.md"), encoding="utf-8") as handle:
        blocks = dict((snippet, code) for code, snippet in re.findall(r"```python\n(# snippet: (\w+)\n.*?)```", handle.read(), flags=re.S))
    namespace: dict = {}
    exec(blocks[name], namespace)  # noqa: S102 - the README's own example code
    return namespace


def recipe_stream(recipe: str, repo: str, buffer_size: int, seed: int = 0):
    """The train stream a recipe gives on one rank of one (world_size 1)."""
    import datasets

    if recipe == "shuffled":  # the card's plain recipe (Quick start + shuffle)
        stream = datasets.load_dataset(repo, "full", split="train", streaming=True)
        return stream.shuffle(seed=seed, buffer_size=buffer_size) if buffer_size else stream
    if recipe == "reshard":  # one shard per row group, then the buffer
        stream = datasets.load_dataset(repo, "full", split="train", streaming=True).reshard()
        return stream.shuffle(seed=seed, buffer_size=buffer_size) if buffer_size else stream
    if recipe == "stream":  # the card's recommended stream (# snippet: stream)
        return readme_snippet("stream")["train_stream"](repo, seed=seed, buffer_size=buffer_size)
    if recipe == "ddp":
        return readme_snippet("ddp")["rank_stream"](repo, "full", 0, 1, seed=seed, buffer_size=buffer_size)
    if recipe == "mixture":
        infos = datasets.get_dataset_infos(repo)
        weights = {source: weight for source, weight in MIXTURE_WEIGHTS.items() if source in infos}
        return readme_snippet("mixture")["mixture_stream"](repo, weights, seed, buffer_size=buffer_size)
    raise ValueError(f"unknown recipe {recipe!r}; expected one of {RECIPES}")


def _vm_hwm_bytes() -> int:
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return 0


def _rss_bytes() -> int:
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


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
    return (info.id if info else -1), _vm_hwm_bytes(), [row["id"] for row in batch]


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


def child_loader(repo: str, recipe: str, buffer_size: str, max_rows: str = "0") -> dict:
    """One recipe and buffer size through DataLoader workers; the figures as a dict."""
    import torch  # noqa: F401 - a training process has imported it long before it streams
    import datasets
    from torch.utils.data import DataLoader

    datasets.disable_progress_bars()
    # datasets 5.2 sleeps 5 s at the end of each worker's shuffled pass; not a cost of the data path.
    datasets.config.SLEEP_TIME_ON_THREADS_SHUTDOWN = 0
    positions, files = file_order(repo)
    limit = int(max_rows) or len(positions)
    stream = recipe_stream(recipe, repo, int(buffer_size))
    parent_rss = _rss_bytes()
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
    stream_positions = [positions[row_id][0] for row_id in ids]
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
        "rank_correlation": rank_correlation(list(range(len(ids))), stream_positions),
        "shards_per_256_rows": shards_per_window([positions[row_id][1] for row_id in ids]),
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
    from arr_coc.export import row_group_rows

    shutil.rmtree(target_repo, ignore_errors=True)
    shutil.copytree(source_repo, target_repo, ignore=shutil.ignore_patterns("*.parquet"))
    for path in glob.glob(os.path.join(source_repo, "data", "*", "*.parquet")):
        table = pq.read_table(path)
        rows = row_group_rows(table.num_rows, table.nbytes, row_group_bytes)
        target = os.path.join(target_repo, os.path.relpath(path, source_repo))
        pq.write_table(table, target, row_group_size=rows, write_page_index=True)


if __name__ == "__main__":  # python scripts/bench_loader.py REPO RECIPE BUFFER [MAX_ROWS]
    print(json.dumps(child_loader(*sys.argv[1:])))
