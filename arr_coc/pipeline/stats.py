"""What one build read, wrote and skipped, per source and split (the build report's "sources").

Shards may run in other processes (`num_proc`) or DataLoader workers, so each shard writes its
figures to a small JSON file in a directory shared by the whole build, and `merge` adds them up.
Invariant for every source and split: items_selected == items_written + sum(skipped.values()).
"""

import glob
import json
import os
from collections import Counter
from dataclasses import dataclass, field

from .agreement import AGREEMENT_SOURCES, REFERENCE_ANSWERS


@dataclass
class ShardStats:
    source: str
    split: str
    part: int
    items_total: int = 0  # the whole split's items: every part reads the whole file, so parts agree
    items_selected: int = 0
    items_written: int = 0
    rows_written: int = 0
    skipped: Counter = field(default_factory=Counter)
    images_skipped: Counter = field(default_factory=Counter)  # whole images skipped, by reason (leakage control)
    images_unchecked: int = 0  # selected images leakage control has no id map for (GQA's `n...` images)
    # [image_id, file, phash, items, rows, answer_counts] of each image written (and of each COCO val2014
    # image read but left without a row): what the near-duplicate audit compares (near_duplicates.py).
    hashed: list = field(default_factory=list)
    answer_counts: Counter = field(default_factory=Counter)  # VQAv2/OK-VQA questions by answer_count (written or low_agreement)

    def skip(self, reason: str, count: int = 1) -> None:
        if count:
            self.skipped[reason] += count

    def skip_image(self, reason: str, items: int) -> None:
        """All `items` of one image skipped for one reason, counting the image too."""
        self.skip(reason, items)
        self.images_skipped[reason] += 1

    def write(self, stats_dir: str, shard_index: int) -> None:
        record = {
            "source": self.source,
            "split": self.split,
            "part": self.part,
            "items_total": self.items_total,
            "items_selected": self.items_selected,
            "items_written": self.items_written,
            "rows_written": self.rows_written,
            "skipped": dict(sorted(self.skipped.items())),
            "images_skipped": dict(sorted(self.images_skipped.items())),
            "images_unchecked": self.images_unchecked,
            "hashed": self.hashed,
            "answer_counts": {str(count): n for count, n in sorted(self.answer_counts.items())},
        }
        path = os.path.join(stats_dir, f"{self.split}-{shard_index:05d}.json")
        with open(path + ".tmp", "w") as handle:
            json.dump(record, handle)
        os.replace(path + ".tmp", path)  # a reader never sees half a file


def merge(stats_dir: str) -> dict:
    """{source: {split: {items_total, items_selected, items_written, rows_written, skipped[, answer_counts]}}}."""
    merged: dict = {}
    for shard in _shard_records(stats_dir):
        into = merged.setdefault(shard["source"], {}).setdefault(
            shard["split"], {"items_total": 0, "items_selected": 0, "items_written": 0, "rows_written": 0, "skipped": {}}
        )
        into["items_total"] = max(into["items_total"], shard["items_total"])
        for key in ("items_selected", "items_written", "rows_written"):
            into[key] += shard[key]
        for reason, count in shard["skipped"].items():
            into["skipped"][reason] = into["skipped"].get(reason, 0) + count
        if shard["source"] in AGREEMENT_SOURCES:
            answer_counts = into.setdefault("answer_counts", {str(count): 0 for count in range(REFERENCE_ANSWERS + 1)})
            for count, questions in shard["answer_counts"].items():
                answer_counts[count] = answer_counts.get(count, 0) + questions
    for splits in merged.values():
        for split_stats in splits.values():
            split_stats["skipped"] = dict(sorted(split_stats["skipped"].items()))
            if "answer_counts" in split_stats:  # in count order ("10" after "9"), more than 10 if a record has more answers
                split_stats["answer_counts"] = dict(sorted(split_stats["answer_counts"].items(), key=lambda item: int(item[0])))
    return merged


def merge_images_skipped(stats_dir: str) -> dict:
    """{source: {split: {reason: images}}} of the whole images skipped (kept out of `merge`: not a report
    field), and under "unchecked" the selected images leakage control had no id map for."""
    merged: dict = {}
    for shard in _shard_records(stats_dir):
        into = merged.setdefault(shard["source"], {}).setdefault(shard["split"], {})
        for reason, count in shard.get("images_skipped", {}).items():
            into[reason] = into.get(reason, 0) + count
        if shard.get("images_unchecked"):
            into["unchecked"] = into.get("unchecked", 0) + shard["images_unchecked"]
    return merged


def merge_hashed(stats_dir: str) -> list[dict]:
    """Every shard's hashed images: {source, split, image_id, file, phash, items, rows, answer_counts}, in counts order
    (answer_counts: the written questions' {"answer_count": questions}, VQAv2 and OK-VQA only)."""
    hashed = []
    for shard in _shard_records(stats_dir):
        for image_id, file, phash, items, rows, answer_counts in shard.get("hashed", ()):
            hashed.append(dict(source=shard["source"], split=shard["split"], image_id=image_id, file=file,
                               phash=phash, items=items, rows=rows, answer_counts=answer_counts))  # fmt: skip
    return hashed


def _shard_records(stats_dir: str):
    """Each shard's record (`ShardStats.write`), in counts order: ShardSpec.counts_index, the config's order of
    sources, not the order the shards were generated in."""
    for path in sorted(glob.glob(os.path.join(stats_dir, "*.json"))):
        with open(path) as handle:
            yield json.load(handle)


# A reason longer than this is cut: one line a user can read, not a dump of a record.
MAX_REASON_CHARS = 500


def record_failure(stats_dir: str, shard_index: int, error: "BaseException | str") -> None:
    """Keep a failing shard's one-line reason: from a `num_proc` worker only a traceback string returns."""
    message = " ".join(str(error).split()) or type(error).__name__
    if len(message) > MAX_REASON_CHARS:
        message = message[: MAX_REASON_CHARS - 3] + "..."
    with open(os.path.join(stats_dir, f"failure-{shard_index:05d}.txt"), "w") as handle:
        handle.write(message)


def failures(stats_dir: str) -> list[str]:
    messages = []
    for path in sorted(glob.glob(os.path.join(stats_dir, "failure-*.txt"))):
        with open(path) as handle:
            messages.append(handle.read())
    return messages
