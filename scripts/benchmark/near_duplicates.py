"""The near-duplicate audit and the card's `near_duplicate_filter` snippet at the size of `full`, for scripts/bench.py.

  scan     the build's audit (arr_coc/pipeline/near_duplicates.audit) over synthetic hash records of full's size:
           about 250,000 train images against 50,000 validation / COCO val2014 images and 35,000 GQA `n...` images
           (random 64-bit hashes, which is what distinct photos look like to pHash, plus planted near pairs);
  snippet  `without_near_duplicates` (docs/near-duplicates.md) over the image-heavy workload's built train split,
           repeated to 250,000 rows, against 50,000 evaluation hashes, map-style; and streamed over the built shards.

Each runs in its own measured subprocess: `python scripts/benchmark/near_duplicates.py scan|snippet ARGS`.
"""

import json
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO_ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, REPO_ROOT)
sys.path.insert(0, os.path.dirname(HERE))

FULL = {"train": 250_000, "others": 50_000, "n_images": 35_000, "rows": 250_000, "eval": 50_000}
QUICK = {"train": 2_000, "others": 500, "n_images": 300, "rows": 4_000, "eval": 1_000}
PLANTED = 100  # near pairs planted among the random hashes
DISTANCE = 8


def child_scan(train: str, others: str, n_images: str) -> dict:
    import numpy as np

    from arr_coc.pipeline import near_duplicates

    rng = np.random.default_rng(0)
    sizes = [int(train), int(others), int(n_images)]
    hashes = rng.integers(0, 2**63, sum(sizes), dtype=np.uint64) * np.uint64(2)
    for index in range(PLANTED):  # a train image re-hosted among the others, a few bits flipped
        hashes[sizes[0] + index] = hashes[index] ^ np.uint64(0b1011 << (index % 60))
    texts = [f"{value:016x}" for value in hashes.tolist()]
    records = []
    for index, text in enumerate(texts):
        split = "train" if index < sizes[0] else "validation" if index < sizes[0] + sizes[1] else near_duplicates.N_IMAGES_SPLIT
        source = "gqa" if split != "validation" or index % 5 == 0 else "vqav2"
        records.append({"source": source, "split": split, "image_id": str(index), "file": f"images/{index}.jpg",
                        "phash": text, "items": 1, "rows": 1, "answer_counts": {}})  # fmt: skip
    written = [record for record in records if record["split"] != near_duplicates.N_IMAGES_SPLIT]
    n_records = near_duplicates.NImages(records=[r for r in records if r["split"] == near_duplicates.N_IMAGES_SPLIT])
    started = time.perf_counter()
    audit = near_duplicates.audit(written, n_records, DISTANCE, progress=False)
    total = time.perf_counter() - started
    pairs = sum(sum(c["pairs_by_distance"].values()) for c in audit.report["comparisons"].values())
    return {"train": sizes[0], "others": sizes[1], "n_images": sizes[2], "audit_s": total, "pairs": pairs,
            "planted": PLANTED}  # fmt: skip


def child_snippet(repo: str, rows: str, eval_count: str) -> dict:
    import datasets
    import numpy as np

    from readme_snippets import run_readme_snippets

    datasets.disable_progress_bars()
    without = run_readme_snippets("phash", "near_duplicate_filter", readme=REPO_ROOT)["without_near_duplicates"]
    train = datasets.load_dataset(repo, "full", split="train")
    copies = -(-int(rows) // len(train))
    big = datasets.concatenate_datasets([train] * copies).select(range(int(rows)))
    rng = np.random.default_rng(1)
    eval_hashes = [f"{value:016x}" for value in (rng.integers(0, 2**63, int(eval_count), dtype=np.uint64) * np.uint64(2)).tolist()]
    eval_hashes[:50] = [metadata["phash"] for metadata in train.select(range(50))["metadata"]]  # some rows to remove
    started = time.perf_counter()
    kept = len(without(big, eval_hashes, DISTANCE))
    map_s = time.perf_counter() - started
    stream = datasets.load_dataset(repo, "full", split="train", streaming=True)
    started = time.perf_counter()
    plain = sum(1 for _ in stream)  # images decoded, as a training loop reads them
    plain_s = time.perf_counter() - started
    started = time.perf_counter()
    streamed = sum(1 for _ in without(stream, eval_hashes, DISTANCE))
    stream_s = time.perf_counter() - started
    return {"rows": int(rows), "eval_hashes": len(eval_hashes), "kept": kept, "map_s": map_s,
            "stream_rows": plain, "stream_kept": streamed, "stream_s": stream_s, "plain_stream_s": plain_s}  # fmt: skip


def _command(*args: str) -> list[str]:
    return [sys.executable, os.path.abspath(__file__), *args]


def measure_near_duplicates(repo: str, quick: bool) -> dict:
    from benchmark.measure import measure

    sizes = QUICK if quick else FULL
    scan = measure(_command("scan", str(sizes["train"]), str(sizes["others"]), str(sizes["n_images"])), "near-duplicate audit")
    snippet = measure(_command("snippet", repo, str(sizes["rows"]), str(sizes["eval"])), "near_duplicate_filter snippet")
    return {"scan": {**scan.result, "peak_process_mb": scan.peak_process_mb},
            "snippet": {**snippet.result, "peak_process_mb": snippet.peak_process_mb}}


def near_duplicates_report(figures: dict) -> list[str]:
    from benchmark.measure import table

    scan, snippet = figures["scan"], figures["snippet"]
    out = ["\nNear duplicates (image-heavy workload): the build's audit on synthetic hashes, and the card's snippet"]
    out.append(table(
        ["what", "size", "s", "peak RSS MB", "found"],
        [["audit (build)", f"{scan['train']:,} train x {scan['others']:,} + {scan['n_images']:,} others", scan["audit_s"],
          scan["peak_process_mb"], f"{scan['pairs']} pairs ({scan['planted']} planted)"],
         ["snippet, map-style", f"{snippet['rows']:,} rows x {snippet['eval_hashes']:,} hashes", snippet["map_s"],
          snippet["peak_process_mb"], f"{snippet['rows'] - snippet['kept']:,} rows removed"],
         ["snippet, streamed", f"{snippet['stream_rows']:,} rows x {snippet['eval_hashes']:,} hashes", snippet["stream_s"], None,
          f"{snippet['stream_rows'] / snippet['stream_s']:,.0f} rows/s (unfiltered stream, images decoded: "
          f"{snippet['stream_rows'] / snippet['plain_stream_s']:,.0f})"]],
    ))  # fmt: skip
    return out


CHILDREN = {"scan": child_scan, "snippet": child_snippet}

if __name__ == "__main__":  # python scripts/benchmark/near_duplicates.py scan|snippet ARGS
    print(json.dumps(CHILDREN[sys.argv[1]](*sys.argv[2:])), flush=True)
    sys.stderr.flush()
    os._exit(0)  # as bench's children: no interpreter teardown after a stream (apache/arrow#45214)
