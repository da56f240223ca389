"""The sequence-lengths part of scripts/bench.py (issue 21; `--workloads lengths` runs it alone): rows/s of the
`lengths` snippet's `with_lengths` (docs/sequence-lengths.md) against the processor-with-image path on the same
rows (every train row of the build), in one process of one run, overall and per source; the time to add lengths to
`full` train estimated from the per-source rates; and the lengths of the rows, per source.

Workload: a sample mirror whose images take COCO-like sizes (SIZES), built as `small` (at most 1,000 train
images per source). Processor: the Qwen3-VL processor of tests/tiny_qwen.py (the official Qwen3-VL chat template,
transformers' own Qwen2-VL image processor) at Qwen3-VL's released pixel bounds, with a BPE tokenizer trained on
the rows' text whose vocabulary (VOCAB_SIZE) holds every word of it, as Qwen's 151k-token vocabulary holds
common English words: the tests' 400-token one splits words into about twice the tokens and tokenizes slower.
"""

import json
import os
import shutil
import statistics
import subprocess
import sys
import time

from benchmark.measure import measure, table

HERE = os.path.dirname(os.path.abspath(__file__))
SCRIPTS = os.path.dirname(HERE)
TESTS = os.path.join(os.path.dirname(SCRIPTS), "tests")
SOURCES = ("vqav2", "gqa", "okvqa", "coco")
# COCO 2014's common shapes, the first one (640x480) most often; GQA's Visual Genome images are of the same kind.
SIZES = [(640, 480), (640, 480), (640, 427), (500, 375), (480, 640), (427, 640), (612, 612), (640, 360), (375, 500),
         (640, 512), (333, 500), (800, 600)]
QUESTIONS_PER_IMAGE = 5  # VQAv2's average (GQA balanced has about 13 per image, OK-VQA about 1)
# `full` train rows: one per image, the card's "Counts" table (GQA's is "about").
FULL_TRAIN_ROWS = {"vqav2": 82_783, "gqa": 72_000, "okvqa": 8_998, "coco": 82_783}
VOCAB_SIZE = 4000  # more than the generated rows' words (about 1,000 tokens are learnt)
SPEEDUP_MIN = 50  # issue 21's goal: with_lengths at least 50x the processor path
IMAGES_PER_SOURCE = {"quick": 16, "full": 1000}  # per split, before `small`'s cap of 1,000 train images


def measure_lengths(work_dir: str, quick: bool) -> dict:
    """Generate the mirror, build `small`, then measure both paths in one child process."""
    import make_sample_mirror

    mirror = os.path.join(work_dir, "mirror-lengths")
    params = dict(images_per_split=IMAGES_PER_SOURCE["quick" if quick else "full"], questions_per_image=QUESTIONS_PER_IMAGE,
                  image_sizes=SIZES)
    manifest = os.path.join(mirror, make_sample_mirror.MANIFEST_NAME)
    if not (os.path.exists(manifest) and _same_params(manifest, params)):
        shutil.rmtree(mirror, ignore_errors=True)
        make_sample_mirror.write_sample_mirror(mirror, **params)
    repo = os.path.join(work_dir, "repo-lengths")
    shutil.rmtree(repo, ignore_errors=True)
    subprocess.run([sys.executable, os.path.join(SCRIPTS, "build.py"), "--config", "small", "--data-dir", mirror,
                    "--output-dir", repo], check=True, capture_output=True)
    command = [sys.executable, os.path.join(SCRIPTS, "bench.py"), "child", "lengths", repo]
    run = measure(command, "sequence lengths: with_lengths against the processor")
    return {**run.result, "mirror": params, "wall_s": run.wall_s}


def _same_params(manifest: str, params: dict) -> bool:
    with open(manifest) as handle:
        recorded = json.load(handle)["params"]
    return (recorded["questions_per_image"] == params["questions_per_image"]
            and recorded.get("image_sizes") == [list(size) for size in params["image_sizes"]]
            and all(counts == {"train": params["images_per_split"], "validation": params["images_per_split"]}
                    for counts in recorded["images"].values()))


def child_lengths(repo: str) -> dict:
    """On the built train split: with_lengths over every row (map-style), over each source's rows, and streamed;
    then the processor with the image over every row, timed per source too."""
    sys.path.insert(0, TESTS)
    import datasets
    from readme_snippets import run_readme_snippets
    from tiny_qwen import QWEN3_VL_SIZE, tiny_processor, train_tokenizer

    datasets.disable_caching()  # every map computes: nothing from an earlier run's cache
    datasets.disable_progress_bars()
    train = datasets.load_dataset(repo, "small", split="train")
    texts = [turn["content"] for turns in train["conversations"] for turn in turns]
    processor = tiny_processor(train_tokenizer(texts, vocab_size=VOCAB_SIZE))
    processor.image_processor.size = dict(QWEN3_VL_SIZE)
    card = run_readme_snippets("qwen", "lengths")
    with_lengths, to_qwen_messages = card["with_lengths"], card["to_qwen_messages"]
    names = train.features["source"].names
    sources = [names[label] for label in train["source"]]
    # Each source's rows as a table of their own (flatten_indices, off the clock), text columns only: with_lengths
    # reads nothing else.
    text_only = train.select_columns(["conversations", "metadata"])
    by_source = {source: text_only.select([i for i, s in enumerate(sources) if s == source]).flatten_indices()
                 for source in SOURCES if source in sources}

    with_lengths(train.select(range(16)), processor)  # one-time costs (template compilation) off the clock
    clock = {}
    started = time.perf_counter()
    lengths = with_lengths(train, processor)["length"][:]
    clock["with_lengths"] = time.perf_counter() - started
    source_s = {}
    for source, rows in by_source.items():
        started = time.perf_counter()
        with_lengths(rows, processor)
        source_s[source] = time.perf_counter() - started
    started = time.perf_counter()
    streamed = [row["length"] for row in with_lengths(datasets.load_dataset(repo, "small", split="train", streaming=True),
                                                      processor).select_columns(["length"])]
    clock["streamed"] = time.perf_counter() - started
    expected, processor_s = [], dict.fromkeys(by_source, 0.0)
    started = time.perf_counter()
    for source, row in zip(sources, train):  # the image decoded as the row is read, then processed
        inputs = processor.apply_chat_template(to_qwen_messages(row), tokenize=True, return_dict=True)
        expected.append(len(inputs["input_ids"][0]))
        now = time.perf_counter()
        processor_s[source] += now - started
        started = now
    counts = {source: len(rows) for source, rows in by_source.items()}
    return {
        "rows": len(train),
        "with_lengths_rows_per_s": len(train) / clock["with_lengths"],
        "streamed_rows_per_s": len(streamed) / clock["streamed"],
        "processor_rows_per_s": len(train) / sum(processor_s.values()),
        "by_source": {source: {"rows": count, "with_lengths_rows_per_s": count / source_s[source],
                               "processor_rows_per_s": count / processor_s[source]} for source, count in counts.items()},
        # rows where the processor and with_lengths disagree, or where the streamed lengths differ from map-style's
        "mismatches": sum(a != b for a, b in zip(expected, lengths)) + sum(a != b for a, b in zip(streamed, lengths))
        + abs(len(streamed) - len(lengths)),
        "per_source": per_source(train, lengths, processor),
    }


def per_source(train, lengths: list, processor) -> dict:
    """Per source: rows, turn pairs, image tokens, text tokens (with this tokenizer) and lengths."""
    image_processor = processor.image_processor
    names = train.features["source"].names
    table_rows: dict = {}
    for source, turns, metadata, length in zip(train["source"], train["conversations"], train["metadata"], lengths):
        image = image_processor.get_number_of_image_patches(metadata["height"], metadata["width"]) // image_processor.merge_size ** 2
        entry = table_rows.setdefault(names[source], {"turns": [], "image": [], "text": [], "length": []})
        entry["turns"].append(len(turns) // 2)
        entry["image"].append(image)
        entry["text"].append(length - image)
        entry["length"].append(length)
    return {source: {"rows": len(values["length"]), **{key: _spread(values[key]) for key in values}}
            for source, values in sorted(table_rows.items(), key=lambda item: SOURCES.index(item[0]))}


def _spread(values: list) -> dict:
    ordered = sorted(values)
    return {"min": ordered[0], "median": statistics.median(ordered), "p90": ordered[int(0.9 * (len(ordered) - 1))],
            "max": ordered[-1], "mean": statistics.fmean(ordered)}


def lengths_report(figures: dict) -> list[str]:
    out = ["\nSequence lengths: the lengths snippet's with_lengths against the processor with the image, on every "
           "train row (one process)"]
    processor_rate = figures["processor_rows_per_s"]
    rows = [["every row", "with_lengths, map-style", figures["rows"], figures["with_lengths_rows_per_s"],
             figures["with_lengths_rows_per_s"] / processor_rate],
            ["every row", "with_lengths, streamed (images not read)", figures["rows"], figures["streamed_rows_per_s"],
             figures["streamed_rows_per_s"] / processor_rate],
            ["every row", "processor.apply_chat_template(..., tokenize=True), image decoded", figures["rows"],
             processor_rate, 1.0]]
    for source, entry in figures["by_source"].items():
        rows.append([source, "with_lengths, map-style / processor", entry["rows"], entry["with_lengths_rows_per_s"],
                     entry["with_lengths_rows_per_s"] / entry["processor_rows_per_s"]])
    out.append(table(["over", "path", "rows", "rows/s", "x processor"], rows))
    out.append(f"  rows whose lengths differ between the paths: {figures['mismatches']}")
    with_lengths_s, processor_s = full_train_estimate_s(figures)
    out.append(f"  full train, {sum(FULL_TRAIN_ROWS.values()):,} rows (the card's Counts, each source at its rate here): "
               f"with_lengths about {with_lengths_s:.0f} s ({with_lengths_s / 60:.1f} min), the processor path about "
               f"{processor_s / 3600:.1f} h")
    out.append("\nLengths per source (Qwen3-VL's released pixel bounds; text tokens with the benchmark's whole-word tokenizer)")
    rows = []
    for source, entry in figures["per_source"].items():
        rows.append([source, entry["rows"], entry["turns"]["median"], entry["image"]["min"], entry["image"]["median"],
                     entry["image"]["max"], entry["text"]["median"], entry["length"]["min"], entry["length"]["median"],
                     entry["length"]["p90"], entry["length"]["max"]])
    out.append(table(["source", "rows", "turns (median)", "image min", "image median", "image max", "text median",
                      "length min", "median", "p90", "max"], rows))
    return out


def full_train_estimate_s(figures: dict) -> tuple[float, float]:
    """Seconds for `full` train by with_lengths and by the processor: each source's rows at its measured rate."""
    by_source = figures["by_source"]
    return (sum(rows / by_source[source]["with_lengths_rows_per_s"] for source, rows in FULL_TRAIN_ROWS.items()),
            sum(rows / by_source[source]["processor_rows_per_s"] for source, rows in FULL_TRAIN_ROWS.items()))


def lengths_targets(figures: dict, add) -> None:
    speedup = figures["with_lengths_rows_per_s"] / figures["processor_rows_per_s"]
    add("with_lengths rows/s / processor rows/s (same rows)", "lengths", speedup, SPEEDUP_MIN, speedup >= SPEEDUP_MIN)
    add("rows whose with_lengths differs from the processor", "lengths", figures["mismatches"], 0, figures["mismatches"] == 0)
