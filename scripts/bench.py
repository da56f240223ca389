#!/usr/bin/env python
"""Benchmark the build and streaming: speed and memory, against baselines measured in the same run.

    python scripts/bench.py [--quick] [--work-dir DIR] [--json PATH] [--num-proc 1 2] [sizes ...]

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
  DataLoader    (image-heavy workload) the card's training streams (its `stream`, `ddp` and `mixture`
                snippets, and datasets' plain shuffle) through 2 DataLoader workers, against today's recipe
                on the layout issue 13 found: each worker's peak RSS, rows/s, time to the first row and
                batch, shuffle quality over seeds, by buffer size and row-group size
                (scripts/bench_streams.py, scripts/bench_loader.py).
Wall time, CPU time (user+sys of the whole process tree, from the kernel's accounting of reaped
children) and peak RSS (the whole tree, sampled; and the largest single process, from its VmHWM) are
recorded for every run. The figures are printed as tables with the targets of issues 5 and 13; nothing is
asserted: `--quick` (small sizes, for CI) only shows that every measurement path runs.
"""

import argparse
import gc
import glob
import io
import json
import logging
import os
import shutil
import sys
import time
import zipfile
from dataclasses import asdict, dataclass, field
from typing import Optional

from bench_measure import MB, Run, measure, median, table
from bench_streams import measure_streams, streams_report, streams_targets

HERE = os.path.dirname(os.path.abspath(__file__))
REPO_ROOT = os.path.dirname(HERE)
sys.path.insert(0, REPO_ROOT)
sys.path.insert(0, HERE)

logger = logging.getLogger("bench")

SPLITS = ("train", "validation")
SOURCE_ORDER = ("vqav2", "gqa", "okvqa", "coco")
IMAGE_ARCHIVES = ("images.zip", "train2014.zip", "val2014.zip")
VQA_SUFFIX = "\nAnswer the question using a single word or phrase."
# Issue 5's targets, per process on a 2-core machine.
RSS_BASE_MB = 300
BUILD_OVER_PASSTHROUGH_MAX = 1.5
IMAGE_HEAVY_MIN_ROWS_PER_S = 600
FIRST_ROW_MAX_S = 0.5
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
    wanted = _comparable(workload.mirror_params())
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
# The measurements (each in a subprocess: bench_measure.measure)
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


def measure_build(workload: Workload, mirror: str, out_dir: str, num_proc: int) -> BuildFigures:
    shutil.rmtree(out_dir, ignore_errors=True)
    command = [
        sys.executable,
        os.path.join(HERE, "build.py"),
        "--config", "full",
        "--data-dir", mirror,
        "--output-dir", out_dir,
        "--num-proc", str(num_proc),
        "--sources", ",".join(workload.sources),
    ]  # fmt: skip
    # build.py logs "<split>: N rows ... -> K shards" once the builder is done, before each export.
    run = measure(command, f"build {workload.name} --num-proc {num_proc}", marks=(("prepared", "INFO build: train:"),))
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


# ---------------------------------------------------------------------------------------------------
# Children: each runs in its own process and prints its figures as one JSON line
# ---------------------------------------------------------------------------------------------------


def child_startup() -> dict:
    started = time.perf_counter()
    import build  # noqa: F401  (datasets, pyarrow, the builder: what every build pays before work)

    return {"import_s": time.perf_counter() - started}


def child_json_load(archive: str, member: str) -> dict:
    """The naive approach: the whole annotation file as Python objects."""
    started = time.perf_counter()
    with zipfile.ZipFile(archive) as handle, handle.open(member) as stream:
        document = json.load(stream)
    elapsed = time.perf_counter() - started
    size = zipfile.ZipFile(archive).getinfo(member).file_size
    return {"member": member, "bytes": size, "load_s": elapsed, "top_level_keys": len(document)}


def child_passthrough(mirror: str, out_dir: str, sources: str) -> dict:
    """The speed limit: what a build must do at least, with nothing in between.

    Every annotation member is parsed with `json.loads` with the collector off (the fastest stdlib
    parse, and memory is no concern here); each image member is read, decode-checked once (the same
    reduced-size decode the builder does, shared images checked once) and its bytes written with
    pyarrow directly, with the text columns, one Parquet file per split.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    from arr_coc import sources as source_files

    gc.disable()
    started = time.perf_counter()
    os.makedirs(out_dir, exist_ok=True)
    rows = 0
    for split in SPLITS:
        checked: dict = {}  # member -> (width, height) or None: shared images are decoded once
        writer = None
        batch: list[dict] = []
        batch_bytes = 0
        path = os.path.join(out_dir, f"{split}.parquet")
        for source in SOURCE_ORDER:
            if source not in sources.split(","):
                continue
            files = source_files.source_files(source, split)
            with zipfile.ZipFile(os.path.join(mirror, files.image_archive)) as images:
                for row in _passthrough_rows(mirror, source, split, files):
                    member = f"{files.image_folder}/{row['file_name']}"
                    try:
                        data = images.read(member)
                    except (KeyError, zipfile.BadZipFile):
                        continue
                    if member not in checked:
                        checked[member] = _decode_check(data)
                    if checked[member] is None:
                        continue
                    batch.append({"id": row["id"], "image": {"bytes": data, "path": row["file_name"]},
                                  "conversations": row["conversations"], "answers": row["answers"]})
                    batch_bytes += len(data)
                    if batch_bytes > 100 * MB:  # datasets' own row-group target
                        writer = _write_batch(pa, pq, writer, path, batch)
                        rows += len(batch)
                        batch, batch_bytes = [], 0
        if batch:
            writer = _write_batch(pa, pq, writer, path, batch)
            rows += len(batch)
        if writer is not None:
            writer.close()
    return {"rows": rows, "elapsed_s": time.perf_counter() - started}


_PASSTHROUGH_SCHEMA = None
_TEXT_LEAVES = ["id", "image.path", "conversations.list.element.role", "conversations.list.element.content",
                "answers.list.element.list.element"]


def _write_batch(pa, pq, writer, path: str, batch: list[dict]):
    global _PASSTHROUGH_SCHEMA
    if _PASSTHROUGH_SCHEMA is None:
        turn = pa.struct([("role", pa.string()), ("content", pa.string())])
        _PASSTHROUGH_SCHEMA = pa.schema(
            [
                ("id", pa.string()),
                ("image", pa.struct([("bytes", pa.binary()), ("path", pa.string())])),
                ("conversations", pa.list_(turn)),
                ("answers", pa.list_(pa.list_(pa.string()))),
            ]
        )
    table = pa.Table.from_pylist(batch, schema=_PASSTHROUGH_SCHEMA)
    if writer is None:
        # The obvious settings for JPEG bytes, as datasets' writer uses: no compression, no dictionary,
        # PLAIN; snappy and dictionaries for the text.
        writer = pq.ParquetWriter(
            path,
            _PASSTHROUGH_SCHEMA,
            compression={name: "none" if name == "image.bytes" else "snappy" for name in _TEXT_LEAVES + ["image.bytes"]},
            use_dictionary=_TEXT_LEAVES,
            column_encoding={"image.bytes": "PLAIN"},
        )
    writer.write_table(table)
    return writer


def _decode_check(data: bytes) -> Optional[tuple]:
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as image:
            width, height = image.size
            if image.format == "JPEG":
                image.draft(image.mode, (max(1, width // 8), max(1, height // 8)))
            image.load()
    except Exception:  # noqa: BLE001 - any failure is a corrupt image here
        return None
    return width, height


def _read_json(archive: str, member: str):
    with zipfile.ZipFile(archive) as handle:
        if member not in handle.namelist():  # GQA: the member may sit in a folder
            member = next(name for name in handle.namelist() if name.rsplit("/", 1)[-1] == member)
        return json.loads(handle.read(member))


def _passthrough_rows(mirror: str, source: str, split: str, files):
    """Rows as dicts of plain text, one per image, grouped the simplest way."""
    original = source_files_original(source, split)
    if source == "coco":
        document = _read_json(os.path.join(mirror, files.questions.archive), files.questions.member)
        names = {str(image["id"]): image["file_name"] for image in document["images"]}
        captions: dict = {}
        for caption in document["annotations"]:
            captions.setdefault(str(caption["image_id"]), []).append(" ".join(caption["caption"].split()))
        for image_id, texts in captions.items():
            file_name = names.get(image_id) or f"COCO_{original}_{int(image_id):012d}.jpg"
            conversations = [{"role": "user", "content": "Describe this image."}, {"role": "assistant", "content": texts[0]}]
            yield {"id": f"coco/{original}/{image_id}/0", "file_name": file_name, "conversations": conversations, "answers": [texts]}
        return
    per_image: dict = {}
    if source == "gqa":
        document = _read_json(os.path.join(mirror, files.questions.archive), files.questions.member)
        for question_id, record in document.items():
            if "answer" in record:
                per_image.setdefault(record["imageId"], []).append((question_id, record["question"], record["answer"], [record["answer"]]))
        file_name = "{}.jpg".format
    else:
        questions = _read_json(os.path.join(mirror, files.questions.archive), files.questions.member)["questions"]
        annotations = _read_json(os.path.join(mirror, files.annotations.archive), files.annotations.member)["annotations"]
        answers = {annotation["question_id"]: annotation for annotation in annotations}
        for question in questions:
            annotation = answers.get(question["question_id"])
            if annotation is not None:
                texts = [answer["answer"] for answer in annotation["answers"]]
                answer = annotation.get("multiple_choice_answer") or max(texts, key=texts.count)
                per_image.setdefault(str(question["image_id"]), []).append((str(question["question_id"]), question["question"], answer, texts))

        def file_name(image_id):
            return f"COCO_{original}_{int(image_id):012d}.jpg"

    for image_id, turns in per_image.items():
        conversations = []
        for _, question, answer, _ in turns:
            conversations.append({"role": "user", "content": question + VQA_SUFFIX})
            conversations.append({"role": "assistant", "content": answer})
        yield {"id": f"{source}/{original}/{image_id}/0", "file_name": file_name(image_id),
               "conversations": conversations, "answers": [turn[3] for turn in turns]}


def source_files_original(source: str, split: str) -> str:
    from arr_coc.sources import ORIGINAL_SPLITS

    return ORIGINAL_SPLITS[source][split]


def child_stream(repo: str, mode: str, rows_wanted: str = "all") -> dict:
    """Rows/s and time to the first row over the train split's shards.

    mode: "decoded" (PIL images, as `load_dataset` gives them), "raw" (`.decode(False)`: bytes), or
    "arrow" (pyarrow `ParquetFile.iter_batches` over the same files: the ceiling). rows_wanted "1"
    stops at the first row. The clock starts at `load_dataset`, after the imports: datasets imports
    torch when it makes an IterableDataset, which a training process has done long before, so torch
    is imported first and its import time is reported on its own.
    """
    files = sorted(glob.glob(os.path.join(repo, "data", "full", "train-*.parquet")))
    limit = None if rows_wanted == "all" else int(rows_wanted)
    if mode == "arrow":
        import pyarrow.parquet as pq

        started = time.perf_counter()
        first, rows = None, 0
        for path in files:
            for batch in pq.ParquetFile(path).iter_batches():
                if first is None:
                    first = time.perf_counter() - started
                rows += batch.num_rows
                if limit is not None and rows >= limit:
                    break
            if limit is not None and rows >= limit:
                break
        return _stream_result(rows, first, time.perf_counter() - started, len(files), None)
    torch_import_s = _import_torch()
    import datasets

    datasets.disable_progress_bars()
    started = time.perf_counter()
    stream = datasets.load_dataset(repo, "full", split="train", streaming=True)
    if mode == "raw":
        stream = stream.decode(False)
    first, rows = None, 0
    for row in stream:
        if first is None:
            first = time.perf_counter() - started
        rows += 1
        if limit is not None and rows >= limit:
            break
    return _stream_result(rows, first, time.perf_counter() - started, len(files), torch_import_s)


def _import_torch() -> Optional[float]:
    started = time.perf_counter()
    try:
        import torch  # noqa: F401
    except ImportError:
        return None
    return time.perf_counter() - started


def _stream_result(rows: int, first: Optional[float], total: float, shards: int, torch_import_s: Optional[float]) -> dict:
    return {
        "rows": rows,
        "first_row_s": first,
        "total_s": total,
        "rows_per_s": rows / total if total else 0.0,
        "shards": shards,
        "torch_import_s": torch_import_s,
    }


CHILDREN = {
    "startup": child_startup,
    "json-load": child_json_load,
    "passthrough": child_passthrough,
    "stream": child_stream,
}


# ---------------------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------------------


@dataclass
class WorkloadResult:
    workload: Workload
    generate_s: Optional[float]  # None: the mirror of an earlier run was reused
    annotation_member: str
    annotation_mb: float
    builds: list[BuildFigures]
    json_load: Run
    passthrough: Run
    streaming: dict  # mode -> Run (every row of the train split)
    first_rows: dict  # mode -> seconds to the first row, one fresh process each
    streams: dict = field(default_factory=dict)  # the card's training streams (bench_streams.measure_streams)


def rss_target_mb(result: WorkloadResult) -> float:
    return RSS_BASE_MB + result.annotation_mb / 2


def report(results: list[WorkloadResult], startup: Run, quick: bool) -> tuple[str, list[dict]]:
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
    targets = evaluate_targets(results)
    out.append("\nTargets (issues 5 and 13)" + (" -- QUICK RUN: sizes far too small for these to mean anything" if quick else ""))
    out.append(table(["target", "workload", "figure", "limit", "met"],
                     [[t["target"], t["workload"], t["figure"], t["limit"], "yes" if t["met"] else "NO"] for t in targets]))
    return "\n".join(out), targets


def evaluate_targets(results: list[WorkloadResult]) -> list[dict]:
    targets = []

    def add(target, workload, figure, limit, met):
        targets.append({"target": target, "workload": workload, "figure": round(figure, 3), "limit": round(limit, 3), "met": met})

    for r in results:
        limit = rss_target_mb(r)
        for b in r.builds:
            add(f"build peak RSS per process, MB (num_proc {b.num_proc})", r.workload.name, b.run.peak_process_mb, limit,
                b.run.peak_process_mb <= limit)
            # The same limit without the file-backed pages of the memory-mapped Arrow cache, which
            # the export reads through (clean page cache the kernel drops under pressure).
            add(f"  same, anonymous memory only (num_proc {b.num_proc})", r.workload.name, b.run.peak_process_anon_mb, limit,
                b.run.peak_process_anon_mb <= limit)
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
    return targets


def to_json(results: list[WorkloadResult], startup: Run, targets: list[dict], args) -> dict:
    def build_dict(b: BuildFigures) -> dict:
        figures = asdict(b)
        figures.update(rows_per_s=b.rows_per_s, questions_per_s=b.questions_per_s, image_mb_per_s=b.image_mb_per_s)
        return figures

    return {
        "quick": args.quick,
        "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]},
        "startup": asdict(startup),
        "workloads": [
            {
                "workload": asdict(r.workload),
                "generate_s": r.generate_s,
                "annotation_member": r.annotation_member,
                "annotation_mb": r.annotation_mb,
                "rss_target_mb": rss_target_mb(r),
                "builds": [build_dict(b) for b in r.builds],
                "json_load": asdict(r.json_load),
                "passthrough": asdict(r.passthrough),
                "streaming": {mode: asdict(run) for mode, run in r.streaming.items()},
                "first_row_s": r.first_rows,
                "streams": r.streams,
            }
            for r in results
        ],
        "targets": targets,
    }


# ---------------------------------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------------------------------


def run_workload(workload: Workload, args) -> WorkloadResult:
    mirror, generate_s = ensure_mirror(workload, args.work_dir, args.regenerate)
    archive, member, size = largest_annotation(mirror)
    builds = []
    for num_proc in args.num_proc:
        builds.append(measure_build(workload, mirror, os.path.join(args.work_dir, f"repo-{workload.name}-np{num_proc}"), num_proc))
    json_load = measure_json_load(mirror)
    passthrough = measure_passthrough(workload, mirror, os.path.join(args.work_dir, f"passthrough-{workload.name}"))
    # Stream what a single-process build wrote (the shards are the same for any num_proc).
    repo = os.path.join(args.work_dir, f"repo-{workload.name}-np{args.num_proc[0]}")
    streaming = {mode: measure_streaming(repo, mode) for mode in STREAM_MODES}
    # A quick run only shows that the path runs: one fresh process per mode is enough.
    repeats = 1 if args.quick else FIRST_ROW_REPEATS
    first_rows = {mode: measure_first_rows(repo, mode, repeats) for mode in STREAM_MODES}
    streams = measure_streams(repo, args.work_dir, args.quick) if workload.name == "coco" else {}
    return WorkloadResult(workload, generate_s, member, size / MB, builds, json_load, passthrough, streaming, first_rows, streams)


def parse_args(argv: Optional[list[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small sizes, every measurement path (CI smoke test)")
    parser.add_argument("--work-dir", default=os.path.join("/tmp", "arr_coc_bench"), help="mirrors and builds go here")
    parser.add_argument("--json", help="also write every figure to this JSON file")
    parser.add_argument("--num-proc", type=int, nargs="+", default=[1, 2], help="build with these num_proc values")
    parser.add_argument("--workloads", default="gqa,coco", help="comma list of gqa, coco")
    parser.add_argument("--regenerate", action="store_true", help="regenerate mirrors even if the work dir has them")
    parser.add_argument("--keep", action="store_true", help="keep the builds and passthrough output (mirrors are kept)")
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
    return args


def _size(text: str) -> tuple[int, int]:
    width, _, height = text.lower().partition("x")
    return int(width), int(height)


def main(argv: Optional[list[str]] = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "child":
        print(json.dumps(CHILDREN[argv[1]](*argv[2:])))
        return 0
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    os.makedirs(args.work_dir, exist_ok=True)
    started = time.perf_counter()
    names = [name.strip() for name in args.workloads.split(",") if name.strip()]
    startup = measure_startup()
    results = [run_workload(workload, args) for workload in workloads(args) if workload.name in names]
    text, targets = report(results, startup, args.quick)
    print(text)
    print(f"\nbenchmark finished in {time.perf_counter() - started:.1f} s")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(to_json(results, startup, targets, args), handle, indent=1)
            handle.write("\n")
    if not args.keep:
        for path in glob.glob(os.path.join(args.work_dir, "repo-*")) + glob.glob(os.path.join(args.work_dir, "passthrough-*")):
            shutil.rmtree(path, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
