"""The report of scripts/bench.py: its figures printed as tables, evaluated against the targets of
issues 5, 13 and 21, and written as JSON (`--json`). `results` are bench.WorkloadResult, one per build
workload; `lengths` the sequence-lengths part's figures (scripts/benchmark/lengths.py)."""

import os
import sys
from dataclasses import asdict
from typing import Optional

from benchmark.baseline import comparison_json, comparison_report, comparison_targets
from benchmark.lengths import lengths_report, lengths_targets
from benchmark.measure import Run, median, table
from benchmark.near_duplicates import near_duplicates_report
from benchmark.streams import streams_report, streams_targets

# Issue 5's targets, per process on a 2-core machine.
RSS_BASE_MB = 300
BUILD_OVER_PASSTHROUGH_MAX = 1.5
IMAGE_HEAVY_MIN_ROWS_PER_S = 600
FIRST_ROW_MAX_S = 0.5


def rss_target_mb(result) -> float:
    return RSS_BASE_MB + result.annotation_mb / 2


def report(
    results: list, startup: Optional[Run], quick: bool, lengths: Optional[dict] = None, baseline_max_ratio: Optional[float] = None
) -> tuple[str, list[dict]]:
    """The tables of the build and streaming workloads (`results`; with `--build-only`, of the builds and their
    revision comparisons only) and of the sequence-lengths part, then the targets."""
    out = workload_tables(results, startup) if results else []
    if lengths:
        out.extend(lengths_report(lengths))
    targets = evaluate_targets(results, lengths, baseline_max_ratio)
    out.append("\nTargets (issues 5, 13 and 21)" + (" -- QUICK RUN: sizes far too small for these to mean anything" if quick else ""))
    out.append(table(["target", "workload", "figure", "limit", "met"],
                     [[t["target"], t["workload"], t["figure"], t["limit"], "yes" if t["met"] else "NO"] for t in targets]))
    return "\n".join(out), targets


def workload_tables(results: list, startup: Run) -> list[str]:
    out = []
    out.append("Workloads")
    out.append(table(
        ["workload", "description", "largest annotation file", "MB", "generated in s"],
        [[r.workload.name, r.workload.description, r.annotation_member, r.annotation_mb,
          "reused" if r.generate_s is None else r.generate_s] for r in results],
    ))  # fmt: skip
    out.append(f"\nStartup of every build (interpreter + imports of build.py): {startup.result['import_s']:.2f} s "
               f"in-process, {startup.wall_s:.2f} s wall, {startup.peak_process_mb:.0f} MB RSS")
    out.append("\nBuild: scripts/build.py --config full (builder + Parquet export), one subprocess per row")
    rows = []
    for r in results:
        for b in r.builds:
            rows.append([
                r.workload.name, b.num_proc, b.rows, b.questions, b.image_mb, b.run.wall_s, b.prepare_s, b.export_s,
                b.rows_per_s, b.questions_per_s, b.image_mb_per_s, b.run.cpu_s,
            ])  # fmt: skip
    out.append(table(
        ["workload", "num_proc", "rows", "questions", "image MB", "wall s", "prepare s", "export s", "rows/s", "q/s",
         "img MB/s", "CPU s"],
        rows,
    ))  # fmt: skip
    out.append("  prepare s = start to the end of download_and_prepare (startup included); export s = the rest.")
    out.append("\nBuild memory, MB")
    rows = []
    for r in results:
        for b in r.builds:
            rows.append([r.workload.name, b.num_proc, b.run.peak_rss_mb, b.run.peak_anon_mb, b.run.peak_process_mb,
                         b.run.peak_process_anon_mb, rss_target_mb(r)])
    out.append(table(["workload", "num_proc", "RSS tree", "anon tree", "RSS max process", "anon max process", "target"],
                     rows))
    out.append("  tree = all processes summed (sampled every 20 ms); max process = the largest single process (RSS: its")
    out.append("  VmHWM); anon = without file-backed pages: the export reads the memory-mapped Arrow cache, whose pages")
    out.append("  count in RSS while mapped (clean page cache that the kernel drops under pressure).")
    for r in results:
        out.extend(comparison_report(r.comparisons))
    if all(r.passthrough is None for r in results):  # --build-only
        return out
    out.append("\nBaselines, each in its own subprocess")
    rows = []
    for r in results:
        j, p = r.json_load, r.passthrough
        rows.append([r.workload.name, "json.load of " + r.annotation_member, j.wall_s, r.annotation_mb / j.result["load_s"],
                     j.cpu_s, j.peak_process_mb, j.peak_process_mb / r.annotation_mb, None])
        rows.append([r.workload.name, "passthrough (json.loads, decode-check once, pyarrow)", p.wall_s, None, p.cpu_s,
                     p.peak_process_mb, None, p.result["rows"] / p.wall_s])
    out.append(table(["workload", "baseline", "wall s", "parse MB/s", "CPU s", "peak RSS MB", "x file", "rows/s"], rows))
    out.append("\nBuild against the baselines (num_proc 1 = one process; num_proc 2: per-process peak)")
    rows = []
    for r in results:
        for b in r.builds:
            rows.append([r.workload.name, b.num_proc, b.run.wall_s / r.passthrough.wall_s,
                         b.run.cpu_s / r.passthrough.cpu_s, b.run.peak_process_mb / r.json_load.peak_process_mb,
                         b.run.peak_process_anon_mb / r.json_load.peak_process_mb, b.run.peak_process_mb / r.annotation_mb])
    out.append(table(["workload", "num_proc", "wall / passthrough", "CPU / passthrough", "peak RSS / json.load",
                      "anon / json.load", "peak RSS / file"], rows))
    out.append("\nStreaming the built train shards (num_proc 1 build), local files, one subprocess per row")
    rows = []
    for r in results:
        arrow = r.streaming["arrow"]
        for mode, label in (("decoded", "load_dataset streaming, images decoded"),
                            ("raw", "load_dataset streaming, .decode(False)"),
                            ("arrow", "pyarrow ParquetFile.iter_batches")):
            s = r.streaming[mode]
            firsts = sorted(r.first_rows[mode])
            rows.append([r.workload.name, label, s.result["shards"], s.result["rows"], median(firsts), firsts[-1],
                         s.result["rows_per_s"], s.result["rows_per_s"] / arrow.result["rows_per_s"], s.peak_process_mb])
    out.append(table(["workload", "reader", "shards", "rows", "first row s", "(max)", "rows/s", "x arrow",
                      "peak RSS MB"], rows))
    torch_import = next((r.streaming["decoded"].result["torch_import_s"] for r in results), None)
    out.append(f"  first row = median of {len(results[0].first_rows['decoded']) if results else 0} fresh processes, from load_dataset (after the imports) to the "
               "first row; rows/s over the whole split.")
    if torch_import is not None:
        out.append(f"  torch is installed, so datasets imports it with the first IterableDataset: {torch_import:.2f} s more "
                   "in a process that has not imported it yet (imported beforehand here, as a training process has).")
    for r in results:
        if r.streams:
            out.extend(streams_report(r.streams, r.workload.name))
        if r.near_duplicates:
            out.extend(near_duplicates_report(r.near_duplicates))
    return out


def evaluate_targets(results: list, lengths: Optional[dict] = None, baseline_max_ratio: Optional[float] = None) -> list[dict]:
    targets = []

    def add(target, workload, figure, limit, met):
        targets.append({"target": target, "workload": workload, "figure": round(figure, 3), "limit": round(limit, 3), "met": met})

    for r in results:
        comparison_targets(r.comparisons, baseline_max_ratio, add)
        limit = rss_target_mb(r)
        for b in r.builds:
            add(f"build peak RSS per process, MB (num_proc {b.num_proc})", r.workload.name, b.run.peak_process_mb, limit,
                b.run.peak_process_mb <= limit)
            # The same limit without the file-backed pages of the memory-mapped Arrow cache, which
            # the export reads through (clean page cache the kernel drops under pressure).
            add(f"  same, anonymous memory only (num_proc {b.num_proc})", r.workload.name, b.run.peak_process_anon_mb, limit,
                b.run.peak_process_anon_mb <= limit)
        if r.passthrough is None:  # --build-only: no pass-through or streams to hold the builds against
            continue
        for b in r.builds:
            if b.num_proc == 1:
                ratio = b.run.wall_s / r.passthrough.wall_s
                add("build time / passthrough (num_proc 1)", r.workload.name, ratio, BUILD_OVER_PASSTHROUGH_MAX,
                    ratio <= BUILD_OVER_PASSTHROUGH_MAX)
                if r.workload.name == "coco":
                    add("image-heavy build rows/s (num_proc 1)", r.workload.name, b.rows_per_s, IMAGE_HEAVY_MIN_ROWS_PER_S,
                        b.rows_per_s >= IMAGE_HEAVY_MIN_ROWS_PER_S)
        for mode in ("decoded", "raw"):
            first = median(r.first_rows[mode])
            add(f"streaming time to first row, s ({mode}, median)", r.workload.name, first, FIRST_ROW_MAX_S,
                first < FIRST_ROW_MAX_S)
        if r.streams:
            streams_targets(r.streams, r.workload.name, add)
    if lengths:
        lengths_targets(lengths, add)
    return targets


def to_json(results: list, startup: Optional[Run], targets: list[dict], args, lengths: Optional[dict] = None) -> dict:
    def build_dict(b) -> dict:
        figures = asdict(b)
        figures.update(rows_per_s=b.rows_per_s, questions_per_s=b.questions_per_s, image_mb_per_s=b.image_mb_per_s)
        return figures

    return {
        "quick": args.quick,
        "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]},
        "startup": asdict(startup) if startup else None,
        "workloads": [
            {
                "workload": asdict(r.workload),
                "generate_s": r.generate_s,
                "annotation_member": r.annotation_member,
                "annotation_mb": r.annotation_mb,
                "rss_target_mb": rss_target_mb(r),
                "builds": [build_dict(b) for b in r.builds],
                "json_load": asdict(r.json_load) if r.json_load else None,
                "passthrough": asdict(r.passthrough) if r.passthrough else None,
                "streaming": {mode: asdict(run) for mode, run in r.streaming.items()},
                "first_row_s": r.first_rows,
                "streams": r.streams,
                "near_duplicates": r.near_duplicates,
                "comparisons": [comparison_json(c, build_dict) for c in r.comparisons],
            }
            for r in results
        ],
        "lengths": lengths,
        "targets": targets,
    }
