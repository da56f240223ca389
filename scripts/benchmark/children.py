"""The child processes of scripts/bench.py: what runs in its own measured process (the imports of
build.py, the `json.load` baseline, the pyarrow passthrough, streaming the built shards) and returns its
figures, which bench.py prints as one JSON line. bench.py runs them as `python scripts/bench.py child
<name> ...` (child_command, CHILDREN); the imports they measure stay inside the functions."""

import gc
import glob
import io
import json
import os
import sys
import time
import zipfile
from typing import Optional

from benchmark.lengths import child_lengths
from benchmark.measure import MB

SPLITS = ("train", "validation")
SOURCE_ORDER = ("vqav2", "gqa", "okvqa", "coco")
VQA_SUFFIX = "\nAnswer the question using a single word or phrase."


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

    from arr_coc.readers import sources as source_files

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
    from arr_coc.readers.sources import ORIGINAL_SPLITS

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


def print_and_exit(result: dict) -> None:
    """A child's last act: its result as one JSON line, then an exit that skips the interpreter's
    teardown. A stream abandoned after its first row can abort there ("terminate called without an
    active exception": pyarrow's reader threads, apache/arrow#45214) after the measurement is done."""
    print(json.dumps(result), flush=True)
    sys.stderr.flush()
    os._exit(0)


CHILDREN = {
    "startup": child_startup,
    "json-load": child_json_load,
    "passthrough": child_passthrough,
    "stream": child_stream,
    "lengths": child_lengths,  # scripts/benchmark/lengths.py
}
