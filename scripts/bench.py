#!/usr/bin/env python
"""Benchmark the build and streaming: speed and memory, against baselines measured in the same run.

    python scripts/bench.py [--quick] [--work-dir DIR] [--json PATH] [--num-proc 1 2] [--workloads gqa,coco,lengths]
                            [--build-only] [--baseline-rev REV [--repeats N] [--baseline-max-ratio X]] [sizes ...]

Two workloads come from the sample-mirror generator (scripts/make_sample_mirror.py):
  gqa   question-heavy, GQA-shaped: one train_balanced_questions.json of >= 200 MB of full-size GQA
        records (about 1 kB, semantic program included), 13 questions per image, small images;
  coco  image-heavy, COCO-shaped: >= 5,000 distinct 640x480 JPEGs (about 100 kB) shared by VQAv2,
        OK-VQA and COCO captions, as the real sources share the COCO 2014 images.

For each workload it measures, each thing in its own subprocess so that memory peaks do not mix:
  build         `scripts/build.py --config full --num-proc N` (builder + Parquet export), as users run it;
  json.load     the naive approach: `json.load` of the workload's largest annotation file (memory baseline);
  passthrough   the speed limit: read the members, decode-check each image once, write the same image
                bytes and text columns with pyarrow directly;
  streaming     `load_dataset(repo, streaming=True)` over the built shards, images decoded and not,
                against pyarrow `ParquetFile.iter_batches` over the same files;
  near duplicates (image-heavy workload) the build's perceptual-hash audit at full's size (250,000 x 85,000
                synthetic hashes) and the card's `near_duplicate_filter` snippet (scripts/benchmark/near_duplicates.py);
  DataLoader    (image-heavy workload) the card's training streams (its `stream`, `ddp` and `mixture`
                snippets, and datasets' plain shuffle) through 2 DataLoader workers, against today's recipe
                on the layout issue 13 found: each worker's peak RSS, rows/s, time to the first row and
                batch, shuffle quality over seeds, by buffer size and row-group size
                (scripts/benchmark/streams.py, scripts/benchmark/loader.py).
A third part, `lengths` (scripts/benchmark/lengths.py; `--workloads lengths` runs it alone), measures the card's
`with_lengths` (docs/sequence-lengths.md) against the Qwen3-VL processor with the image, on the same rows of a
`small` build with COCO-like image sizes, and estimates the time to add lengths to `full` train.
With `--baseline-rev REV`, each build is also measured against REV's own scripts/build.py on the same
mirror, alternating, `--repeats` builds each (scripts/benchmark/baseline.py): what a change costs against
the code before it, in the same run. `--build-only` measures the builds and nothing else.
Wall time, CPU time (user+sys of the whole process tree, from the kernel's accounting of reaped
children) and peak RSS (the whole tree, sampled; and the largest single process, from its VmHWM) are
recorded for every run. The figures are printed as tables with the targets of issues 5 and 13; nothing is
asserted: `--quick` (small sizes, for CI) only shows that every measurement path runs.

This file holds the workloads, the measurements and the command line; its parts: scripts/benchmark/measure.py
(measuring one subprocess, tables), scripts/benchmark/children.py (the child processes, run as
`bench.py child <name> ...`), scripts/benchmark/report.py (tables, targets, JSON), scripts/benchmark/streams.py and
scripts/benchmark/loader.py (the DataLoader streams), scripts/benchmark/baseline.py (a build against another revision).
"""

import argparse
import glob
import json
import logging
import os
import shutil
import sys
import time
import zipfile
from dataclasses import dataclass, field
from typing import Optional

from benchmark.baseline import compare_builds, export_revision
from benchmark.children import CHILDREN, print_and_exit
from benchmark.lengths import measure_lengths
from benchmark.measure import MB, Run, measure
from benchmark.near_duplicates import measure_near_duplicates
from benchmark.report import report, to_json
from benchmark.streams import measure_streams

HERE = os.path.dirname(os.path.abspath(__file__))
REPO_ROOT = os.path.dirname(HERE)
sys.path.insert(0, REPO_ROOT)
sys.path.insert(0, HERE)

logger = logging.getLogger("bench")

IMAGE_ARCHIVES = ("images.zip", "train2014.zip", "val2014.zip")
# The export's first log line ("<split>/<source>: N rows ... -> K shards"), once the builder is done.
PREPARED_MARK = "INFO arr_coc.publish.export: train/"
STREAM_MODES = ("decoded", "raw", "arrow")
FIRST_ROW_REPEATS = 3


# ---------------------------------------------------------------------------------------------------
# Workloads
# ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Workload:
    name: str
    description: str
    sources: tuple
    images: dict  # the generator's per-source, per-split image counts
    questions_per_image: int
    image_size: tuple

    def mirror_params(self) -> dict:
        return dict(
            images_per_split=0,
            questions_per_image=self.questions_per_image,
            image_size=self.image_size,
            images=self.images,
            sources=self.sources,
            broken=True,  # a few missing/corrupt images and orphan questions, as in real mirrors
            seed=0,
        )


def workloads(args) -> list[Workload]:
    gqa_images = {"train": args.gqa_images, "validation": args.gqa_validation_images}
    # Per split, as the generator's manifest records them, so an earlier run's mirror is recognised.
    coco_family = {
        source: {"train": count, "validation": count}
        for source, count in (("vqav2", args.coco_images), ("okvqa", args.okvqa_images), ("coco", args.coco_images))
    }
    return [
        Workload(
            "gqa",
            f"GQA-shaped: {args.gqa_images:,} + {args.gqa_validation_images:,} images x {args.gqa_questions} questions",
            ("gqa",),
            {"gqa": gqa_images},
            args.gqa_questions,
            (64, 48),
        ),
        Workload(
            "coco",
            f"COCO-shaped: 2 x {args.coco_images:,} images {args.image_size[0]}x{args.image_size[1]} "
            f"(VQAv2 + captions each, OK-VQA {args.okvqa_images:,}) x {args.vqa_questions} questions",
            ("vqav2", "okvqa", "coco"),
            coco_family,
            args.vqa_questions,
            tuple(args.image_size),
        ),
    ]


def ensure_mirror(workload: Workload, work_dir: str, regenerate: bool) -> tuple[str, Optional[float]]:
    """The workload's mirror and the seconds its generation took (None: an identical one was reused)."""
    import make_sample_mirror

    path = os.path.join(work_dir, f"mirror-{workload.name}")
    manifest_path = os.path.join(path, make_sample_mirror.MANIFEST_NAME)
    wanted = _comparable({**workload.mirror_params(), "picture_version": make_sample_mirror.PICTURE_VERSION})
    if not regenerate and os.path.exists(manifest_path):
        with open(manifest_path) as handle:
            if _comparable(json.load(handle)["params"]) == wanted:
                logger.info("%s: reusing the mirror in %s", workload.name, path)
                return path, None
    shutil.rmtree(path, ignore_errors=True)
    logger.info("%s: generating the mirror (%s)", workload.name, workload.description)
    started = time.perf_counter()
    make_sample_mirror.write_sample_mirror(path, **workload.mirror_params())
    return path, time.perf_counter() - started


def _comparable(params: dict) -> dict:
    keys = ("questions_per_image", "image_size", "sources", "broken", "seed")
    plain = {key: json.loads(json.dumps(params[key])) for key in keys}
    plain["images"] = json.loads(json.dumps(params.get("images")))
    plain["picture_version"] = params.get("picture_version")  # a mirror of older pictures is regenerated
    return plain


def largest_annotation(mirror: str) -> tuple[str, str, int]:
    """(archive, member, bytes) of the biggest JSON member of the mirror's annotation archives."""
    best = ("", "", -1)
    for path in sorted(glob.glob(os.path.join(mirror, "*.zip"))):
        if os.path.basename(path) in IMAGE_ARCHIVES:
            continue
        with zipfile.ZipFile(path) as archive:
            for info in archive.infolist():
                if info.filename.endswith(".json") and info.file_size > best[2]:
                    best = (os.path.basename(path), info.filename, info.file_size)
    return best


# ---------------------------------------------------------------------------------------------------
# The measurements (each in a subprocess: measure.measure)
# ---------------------------------------------------------------------------------------------------


def child_command(*args: str) -> list[str]:
    return [sys.executable, os.path.abspath(__file__), "child", *args]


@dataclass
class BuildFigures:
    workload: str
    num_proc: int
    rows: int
    questions: int
    image_mb: float  # image bytes written into the shards
    run: Run
    prepare_s: Optional[float]  # start to the end of download_and_prepare (startup included)
    export_s: Optional[float]

    @property
    def rows_per_s(self) -> float:
        return self.rows / self.run.wall_s

    @property
    def questions_per_s(self) -> float:
        return self.questions / self.run.wall_s

    @property
    def image_mb_per_s(self) -> float:
        return self.image_mb / self.run.wall_s


def measure_build(workload: Workload, mirror: str, out_dir: str, num_proc: int, build_script: Optional[str] = None,
                  tag: str = "") -> BuildFigures:
    """One `--config full` build by `build_script` (default: this repository's scripts/build.py)."""
    shutil.rmtree(out_dir, ignore_errors=True)
    command = [
        sys.executable,
        build_script or os.path.join(HERE, "build.py"),
        "--config", "full",
        "--data-dir", mirror,
        "--output-dir", out_dir,
        "--num-proc", str(num_proc),
        "--sources", ",".join(workload.sources),
    ]  # fmt: skip
    label = f"build {workload.name} --num-proc {num_proc}" + (f" ({tag})" if tag else "")
    run = measure(command, label, marks=(("prepared", PREPARED_MARK),))
    with open(os.path.join(out_dir, "data", "full", "build_report.json")) as handle:
        report = json.load(handle)
    rows = sum(split["rows"] for split in report["splits"].values())
    questions = sum(
        stats["items_written"] for source, splits in report["sources"].items() if source != "coco" for stats in splits.values()
    )
    prepared = run.marks.get("prepared")
    return BuildFigures(
        workload=workload.name,
        num_proc=num_proc,
        rows=rows,
        questions=questions,
        image_mb=image_bytes(os.path.join(out_dir, "data", "full")) / MB,
        run=run,
        prepare_s=prepared,
        export_s=None if prepared is None else run.wall_s - prepared,
    )


def image_bytes(shards_dir: str) -> int:
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    total = 0
    for path in sorted(glob.glob(os.path.join(shards_dir, "*.parquet"))):
        column = pq.read_table(path, columns=["image"]).column("image")
        total += pc.sum(pc.binary_length(pc.struct_field(column, "bytes"))).as_py() or 0
    return total


def measure_json_load(mirror: str) -> Run:
    archive, member, _ = largest_annotation(mirror)
    return measure(child_command("json-load", os.path.join(mirror, archive), member), f"json.load {member}")


def measure_passthrough(workload: Workload, mirror: str, out_dir: str) -> Run:
    shutil.rmtree(out_dir, ignore_errors=True)
    return measure(
        child_command("passthrough", mirror, out_dir, ",".join(workload.sources)), f"passthrough {workload.name}"
    )


def measure_streaming(repo: str, mode: str) -> Run:
    return measure(child_command("stream", repo, mode), f"streaming {mode}")


def measure_first_rows(repo: str, mode: str, repeats: int) -> list[float]:
    """Time to the first row in `repeats` fresh processes (it is short, so one run is noisy)."""
    return [measure(child_command("stream", repo, mode, "1"), f"first row {mode}").result["first_row_s"] for _ in range(repeats)]


def measure_startup() -> Run:
    return measure(child_command("startup"), "startup (interpreter + imports of build.py)")


@dataclass
class WorkloadResult:
    workload: Workload
    generate_s: Optional[float]  # None: the mirror of an earlier run was reused
    annotation_member: str
    annotation_mb: float
    builds: list[BuildFigures]
    json_load: Optional[Run]  # None: --build-only (as the streaming figures below)
    passthrough: Optional[Run]
    streaming: dict  # mode -> Run (every row of the train split)
    first_rows: dict  # mode -> seconds to the first row, one fresh process each
    streams: dict = field(default_factory=dict)  # the card's training streams (streams.measure_streams)
    near_duplicates: dict = field(default_factory=dict)  # the audit and the card's snippet at full's size
    comparisons: list = field(default_factory=list)  # baseline.Comparison per num_proc, with --baseline-rev


# ---------------------------------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------------------------------


def run_workload(workload: Workload, args, revision=None) -> WorkloadResult:
    mirror, generate_s = ensure_mirror(workload, args.work_dir, args.regenerate)
    archive, member, size = largest_annotation(mirror)
    builds, comparisons = [], []
    for num_proc in args.num_proc:
        out_dir = os.path.join(args.work_dir, f"repo-{workload.name}-np{num_proc}")
        if revision is None:
            builds.append(measure_build(workload, mirror, out_dir, num_proc))
            continue

        def build_with(script: str, tag: str) -> BuildFigures:
            # the new side writes where the single build does: the streaming figures read it
            return measure_build(workload, mirror, out_dir if tag == "new" else out_dir + "-baseline", num_proc, script, tag)

        comparison = compare_builds(build_with, revision, args.repeats, workload.name, num_proc)
        comparisons.append(comparison)
        builds.append(sorted(comparison.new, key=lambda figures: figures.run.wall_s)[len(comparison.new) // 2])
    if args.build_only:
        return WorkloadResult(workload, generate_s, member, size / MB, builds, None, None, {}, {}, comparisons=comparisons)
    json_load = measure_json_load(mirror)
    passthrough = measure_passthrough(workload, mirror, os.path.join(args.work_dir, f"passthrough-{workload.name}"))
    # Stream what a single-process build wrote (the shards are the same for any num_proc).
    repo = os.path.join(args.work_dir, f"repo-{workload.name}-np{args.num_proc[0]}")
    streaming = {mode: measure_streaming(repo, mode) for mode in STREAM_MODES}
    # A quick run only shows that the path runs: one fresh process per mode is enough.
    repeats = 1 if args.quick else FIRST_ROW_REPEATS
    first_rows = {mode: measure_first_rows(repo, mode, repeats) for mode in STREAM_MODES}
    streams = measure_streams(repo, args.work_dir, args.quick) if workload.name == "coco" else {}
    near = measure_near_duplicates(repo, args.quick) if workload.name == "coco" else {}
    return WorkloadResult(workload, generate_s, member, size / MB, builds, json_load, passthrough, streaming, first_rows, streams, near,
                          comparisons)


def parse_args(argv: Optional[list[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small sizes, every measurement path (CI smoke test)")
    parser.add_argument("--work-dir", default=os.path.join("/tmp", "arr_coc_bench"), help="mirrors and builds go here")
    parser.add_argument("--json", help="also write every figure to this JSON file")
    parser.add_argument("--num-proc", type=int, nargs="+", default=[1, 2], help="build with these num_proc values")
    parser.add_argument("--workloads", default="gqa,coco,lengths",
                        help="comma list of gqa, coco (build and streaming) and lengths (the sequence-lengths part, "
                             "scripts/benchmark/lengths.py); --workloads lengths runs just that")
    parser.add_argument("--regenerate", action="store_true", help="regenerate mirrors even if the work dir has them")
    parser.add_argument("--keep", action="store_true", help="keep the builds and passthrough output (mirrors are kept)")
    parser.add_argument("--build-only", action="store_true",
                        help="measure the builds only (no baselines, streaming, DataLoader or lengths part)")
    parser.add_argument("--baseline-rev", metavar="REV",
                        help="also build with this git revision's scripts/build.py on the same mirror, alternating (e.g. main)")
    parser.add_argument("--repeats", type=int, default=3, help="with --baseline-rev: builds per side (default 3)")
    parser.add_argument("--baseline-max-ratio", type=float, metavar="X",
                        help="with --baseline-rev: a target, build time at most X times the baseline's (e.g. 1.05)")
    sizes = parser.add_argument_group("sizes (defaults: the issue's; --quick shrinks them)")
    sizes.add_argument("--gqa-images", type=int, help="GQA train images (default 18000: a ~210 MB question file)")
    sizes.add_argument("--gqa-validation-images", type=int, help="GQA validation images (default 500)")
    sizes.add_argument("--gqa-questions", type=int, default=13, help="GQA questions per image (default 13)")
    sizes.add_argument("--coco-images", type=int, help="COCO images per split, shared by VQAv2 and captions (default 2500)")
    sizes.add_argument("--okvqa-images", type=int, help="OK-VQA images per split (default 300)")
    sizes.add_argument("--vqa-questions", type=int, default=5, help="VQAv2 questions per image (default 5)")
    sizes.add_argument("--image-size", type=_size, default=(640, 480), help="COCO image size WxH (default 640x480)")
    args = parser.parse_args(argv)
    defaults = dict(gqa_images=(400, 18000), gqa_validation_images=(40, 500), coco_images=(60, 2500), okvqa_images=(10, 300))
    for name, (quick, full) in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, quick if args.quick else full)
    if args.quick and args.work_dir == os.path.join("/tmp", "arr_coc_bench"):
        args.work_dir = os.path.join("/tmp", "arr_coc_bench_quick")
    args.work_dir = os.path.abspath(args.work_dir)
    if os.path.commonpath([args.work_dir, REPO_ROOT]) == REPO_ROOT:
        parser.error("--work-dir must be outside the repository (benchmark data never goes into it)")
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    if args.baseline_rev is None and args.baseline_max_ratio is not None:
        parser.error("--baseline-max-ratio needs --baseline-rev")
    return args


def _size(text: str) -> tuple[int, int]:
    width, _, height = text.lower().partition("x")
    return int(width), int(height)


def main(argv: Optional[list[str]] = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "child":
        print_and_exit(CHILDREN[argv[1]](*argv[2:]))
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    os.makedirs(args.work_dir, exist_ok=True)
    started = time.perf_counter()
    names = [name.strip() for name in args.workloads.split(",") if name.strip()]
    builds = [workload for workload in workloads(args) if workload.name in names]
    try:
        revision = export_revision(args.baseline_rev, args.work_dir) if args.baseline_rev else None
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    startup = measure_startup() if builds else None
    results = [run_workload(workload, args, revision) for workload in builds]
    lengths = measure_lengths(args.work_dir, args.quick) if "lengths" in names and not args.build_only else None
    text, targets = report(results, startup, args.quick, lengths, args.baseline_max_ratio)
    print(text)
    print(f"\nbenchmark finished in {time.perf_counter() - started:.1f} s")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(to_json(results, startup, targets, args, lengths), handle, indent=1)
            handle.write("\n")
    if not args.keep:
        outputs = ("repo-*", "passthrough-*", "baseline-*")  # the exported revisions too: a next run exports again
        for path in [path for pattern in outputs for path in glob.glob(os.path.join(args.work_dir, pattern))]:
            shutil.rmtree(path, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
