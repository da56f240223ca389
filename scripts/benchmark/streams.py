"""The training streams part of scripts/bench.py: the card's recipes through DataLoader workers on the
image-heavy build, against today's recipe as issue 13 found it, and the issue's targets.

Baseline ("today's"): datasets' `shuffle(seed, buffer_size=1000)`, the card's recipe when the issue
was filed, on the export's layout of then (8 shards of one ~66 MB row group, `rewrite_as_filed`),
measured in the same run as everything it is compared with. Every figure comes from
scripts/benchmark/loader.py in its own subprocess.
"""

import os
import sys
from typing import Optional

from benchmark import loader as bench_loader
from benchmark.measure import MB, measure, median, table

HERE = os.path.dirname(os.path.abspath(__file__))

BASELINE = ("shuffled", 1000, "as filed")
# Issue 13's targets are for the recommended stream (the card's `stream` snippet).
RECOMMENDED = ("stream", 64, "as built")
# The card's recommended streams: its `stream`, `ddp` and `mixture` snippets at their default buffer.
CARD_STREAMS = [RECOMMENDED, ("ddp", 64, "as built"), ("mixture", 64, "as built")]
# (recipe, buffer size, layout): "as built" = the export's shards; "N MB" = the same rows rewritten
# with N MB row groups; "as filed" = the baseline's layout.
LOADER_RUNS = [BASELINE,
               ("shuffled", 0, "as built"), ("shuffled", 256, "as built"), ("shuffled", 1000, "as built"),
               ("stream", 0, "as built"), ("stream", 64, "as built"), ("stream", 128, "as built"),
               ("stream", 256, "as built"), ("stream", 1000, "as built"),
               ("ddp", 64, "as built"), ("mixture", 0, "as built"), ("mixture", 64, "as built"),
               ("mixture", 256, "as built"), ("stream", 64, "1 MB"), ("stream", 64, "8 MB")]  # fmt: skip
LOADER_QUICK_RUNS = [BASELINE] + CARD_STREAMS
# Time to the first row, and shuffle quality over seeds.
FIRST_ROW_RUNS = [BASELINE] + CARD_STREAMS
QUALITY_RUNS = [BASELINE, ("shuffled", 1000, "as built"), RECOMMENDED, ("stream", 128, "as built")] + CARD_STREAMS[1:]
QUALITY_QUICK_RUNS = [BASELINE, RECOMMENDED]
FIRST_ROW_REPEATS, QUALITY_SEEDS = 7, 5
WORKER_PEAK_MAX_MB = 500
ROWS_PER_S_MIN_RATIO = 0.9
FIRST_ROW_MAX_S = 0.2


def layouts(repo: str, work_dir: str, runs: list) -> dict:
    """layout name -> a repository holding the build's rows in that layout (rewritten once)."""
    paths = {"as built": repo}
    for layout in sorted({run[2] for run in runs} - {"as built"}):
        target = os.path.join(work_dir, "repo-coco-" + layout.replace(" ", "-").lower())
        if layout == "as filed":
            bench_loader.rewrite_as_filed(repo, target)
        else:
            bench_loader.rewrite_row_groups(repo, target, int(float(layout.split()[0]) * MB))
        paths[layout] = target
    return paths


def _loader_command(mode: str, repo: str, recipe: str, buffer_size: int, *extra: str) -> list[str]:
    return [sys.executable, os.path.join(HERE, "loader.py"), mode, repo, recipe, str(buffer_size), *extra]


def measure_streams(repo: str, work_dir: str, quick: bool) -> dict:
    """{"loader": [...], "first_row": [...], "quality": [...]}: one subprocess per measurement."""
    runs = LOADER_QUICK_RUNS if quick else LOADER_RUNS
    paths = layouts(repo, work_dir, runs)
    figures: dict = {"loader": [], "first_row": [], "quality": []}
    for recipe, buffer_size, layout in runs:
        run = measure(_loader_command("loader", paths[layout], recipe, buffer_size), f"DataLoader {recipe} {buffer_size} ({layout})")
        figures["loader"].append({**run.result, "layout": layout, "tree_peak_process_mb": run.peak_process_mb})
    repeats = 1 if quick else FIRST_ROW_REPEATS
    for recipe, buffer_size, layout in FIRST_ROW_RUNS:
        seconds = [
            measure(_loader_command("first-row", paths[layout], recipe, buffer_size), f"first row {recipe} {buffer_size} ({layout})").result["first_row_s"]
            for _ in range(repeats)
        ]  # fmt: skip
        figures["first_row"].append({"recipe": recipe, "buffer_size": buffer_size, "layout": layout, "seconds": seconds})
    seeds = 2 if quick else QUALITY_SEEDS
    for recipe, buffer_size, layout in QUALITY_QUICK_RUNS if quick else QUALITY_RUNS:
        run = measure(_loader_command("quality", paths[layout], recipe, buffer_size, str(seeds)), f"shuffle quality {recipe} {buffer_size} ({layout})")
        figures["quality"].append({**run.result, "layout": layout})
    return figures


def _find(entries: list[dict], key: tuple) -> Optional[dict]:
    return next((e for e in entries if (e["recipe"], e["buffer_size"], e["layout"]) == key), None)


def mean_abs(values: list) -> Optional[float]:
    values = [abs(v) for v in values if v is not None]
    return sum(values) / len(values) if values else None


def streams_report(figures: dict, workload_name: str) -> list[str]:
    baseline = _find(figures["loader"], BASELINE)
    out = [f"\nDataLoader workers ({workload_name}): train split, images decoded, 2 workers, batch 8, one subprocess per row;"
           f" x today = against {BASELINE[0]}({BASELINE[1]}) on the layout issue 13 found ('as filed'), same run"]  # fmt: skip
    rows = []
    for f in figures["loader"]:
        workers = f["worker_peak_rss_mb"]
        rows.append([
            f["recipe"], f["buffer_size"], f["layout"], f["row_groups_per_file"], f["num_shards"], f["rows"],
            " / ".join(f"{workers[w]:.0f}" for w in sorted(workers)), f["parent_rss_mb"], f["rows_per_s"],
            f["rows_per_s"] / baseline["rows_per_s"] if baseline else None, f["rows_per_cpu_s"],
            f["rows_per_cpu_s"] / baseline["rows_per_cpu_s"] if baseline else None, f["first_batch_s"],
            f["rank_correlation"], f["shards_per_256_rows"],
        ])  # fmt: skip
    out.append(table(
        ["recipe", "buffer", "layout", "groups/file", "shards", "rows", "peak RSS per worker MB", "parent MB", "rows/s",
         "x today", "rows/CPU-s", "x today", "first batch s", "rank corr", "shards/256 rows"],
        rows,
    ))  # fmt: skip
    out.append("  peak RSS per worker = each worker's VmHWM (read in the worker); parent MB = the main process's RSS when")
    out.append("  the workers fork. rows/CPU-s counts the CPU time of the parent and its workers: unlike rows/s, it is not")
    out.append("  diluted by other load on the machine. rank corr / shards/256 rows: one pass with seed 0.")
    rows = []
    for f in figures["first_row"]:
        rows.append([f["recipe"], f["buffer_size"], f["layout"], len(f["seconds"]), median(f["seconds"]), min(f["seconds"]), max(f["seconds"])])
    out.append("\nTime to the first row: iter(DataLoader(2 workers, batch 1)) to the first row, image decoded; fresh processes")
    out.append(table(["recipe", "buffer", "layout", "runs", "median s", "min s", "max s"], rows))
    rows = []
    for f in figures["quality"]:
        windows = [w for w in f["shards_per_256_rows"] if w is not None]
        rows.append([f["recipe"], f["buffer_size"], f["layout"], f["seeds"], mean_abs(f["rank_correlations"]),
                     max(abs(c) for c in f["rank_correlations"] if c is not None), sum(windows) / len(windows) if windows else None])
    out.append("\nShuffle quality over seeds (row ids only, 2 workers): |rank corr| between stream and file order (0: no")
    out.append("trace of file order), and shard files that 256 consecutive rows come from (layouts differ in file count)")
    out.append(table(["recipe", "buffer", "layout", "seeds", "mean |rank corr|", "max |rank corr|", "shards/256 rows"], rows))
    return out


def streams_targets(figures: dict, workload_name: str, add) -> None:
    """Issue 13's targets for the card's recommended stream against today's recipe (`add` records one)."""
    recommended, baseline = _find(figures["loader"], RECOMMENDED), _find(figures["loader"], BASELINE)
    if recommended is None or baseline is None:
        return
    peak = max(recommended["worker_peak_rss_mb"].values())
    add("stream snippet: peak RSS per worker, MB", workload_name, peak, WORKER_PEAK_MAX_MB, peak <= WORKER_PEAK_MAX_MB)
    quality, baseline_quality = _find(figures["quality"], RECOMMENDED), _find(figures["quality"], BASELINE)
    if quality and baseline_quality:
        ours, today = mean_abs(quality["rank_correlations"]), mean_abs(baseline_quality["rank_correlations"])
        add("stream snippet: mean |rank corr| (limit: today's)", workload_name, ours, today, ours <= today)
    for figure, label in (("rows_per_s", "decoded rows/s"), ("rows_per_cpu_s", "decoded rows per CPU-s")):
        ratio = recommended[figure] / baseline[figure]
        add(f"stream snippet: {label} / today's", workload_name, ratio, ROWS_PER_S_MIN_RATIO, ratio >= ROWS_PER_S_MIN_RATIO)
    first = _find(figures["first_row"], RECOMMENDED)
    if first:
        seconds = median(first["seconds"])
        add("stream snippet: time to first row, s (median)", workload_name, seconds, FIRST_ROW_MAX_S, seconds < FIRST_ROW_MAX_S)
