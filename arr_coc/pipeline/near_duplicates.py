"""The near-duplicate audit (DESIGN.md, "Near duplicates"): Hamming distances between perceptual hashes.

Ids cannot see a photo re-hosted under another id (Visual Genome images without a recorded `coco_id`,
GQA's `n...` testdev/test/challenge images). So every build with `decontaminate` on compares the hash
of every train image it writes against
  (1) the validation images it writes and the COCO val2014 images it reads, and
  (2) every GQA `n...` member of `images.zip` (listed by the archive's central directory),
and reports the pairs within MAX_REPORTED_DISTANCE bits. With `near_duplicate_distance=D` the images
within D are also skipped: in a pair of a train image and an evaluation photo (COCO val2014, `n...`)
the train image (`eval_near_duplicate`); in any other pair of a train and a validation image (a GQA
validation image) the validation image (`train_near_duplicate`), unless its train partners are all
skipped already. The unit is an image file (archive folder and member): a COCO file that VQAv2,
OK-VQA and COCO Captions share is one image with three sources, and a file is never paired with itself.

The comparison is vectorised: XOR of uint64 hashes and numpy's popcount (`np.bitwise_count`) over
blocks of train images against all the others, so `full` (about 250k train images against 50k
others) takes seconds, not a Python loop over 10^10 pairs (scripts/bench.py times it).
"""

import logging
import re
import time
from dataclasses import dataclass, field
from typing import Optional

import numpy as np
from tqdm.auto import tqdm

from ..readers.sources import ORIGINAL_SPLITS
from ..schema import image_key
from .images import CheckedImage, ImageStore
from .phash import hashes_to_uint64

logger = logging.getLogger(__name__)

EVAL_REASON = "eval_near_duplicate"  # a train image near an evaluation photo
TRAIN_REASON = "train_near_duplicate"  # a validation image near a train image
REASONS = (EVAL_REASON, TRAIN_REASON)
MAX_REPORTED_DISTANCE = 10  # pairs per distance are counted up to here
MAX_LISTED_PAIRS = 1000
COCO_FAMILY = ("vqav2", "okvqa", "coco")  # their validation images are COCO val2014 photos
N_IMAGE_MEMBER = re.compile(r"^images/(n\d+)\.jpg$")  # GQA testdev/test/challenge photos in images.zip
N_IMAGES_SPLIT = "testdev/test/challenge"
VALIDATION_COMPARISON = "train_vs_validation"
N_IMAGES_COMPARISON = "train_vs_gqa_n_images"
# One tile of the distance matrix: 32 train images x 8,192 others (2 MB of uint64 XOR, then uint8 counts).
BLOCK_ROWS = 32
BLOCK_ELEMENTS = 1 << 18
NEVER_NEAR = 65  # a tile's distance for a file paired with itself


@dataclass
class HashedFile:
    """One image file and every (source, split) that uses it."""

    file: str
    phash: str
    image_id: str
    uses: list = field(default_factory=list)  # {source, split, items, rows}

    @property
    def evaluation(self) -> bool:
        """A COCO val2014 photo or a GQA `n...` photo: the photos evaluation sets are made of. An `n...` member is one
        by its name, also where a GQA split uses it (it is then compared with the validation images, once)."""
        return N_IMAGE_MEMBER.match(self.file) is not None or any(
            use["split"] == "validation" and use["source"] in COCO_FAMILY for use in self.uses)  # fmt: skip

    def describe(self) -> dict:
        splits = sorted({use["split"] for use in self.uses})
        return {"image_id": self.image_id, "sources": sorted({use["source"] for use in self.uses}), "split": "+".join(splits)}


def by_file(records) -> dict[str, HashedFile]:
    """The shards' hashed images (arr_coc/pipeline/stats.merge_hashed) grouped by file."""
    files: dict[str, HashedFile] = {}
    for record in records:
        entry = files.setdefault(record["file"], HashedFile(record["file"], record["phash"], record["image_id"]))
        entry.uses.append({key: record[key] for key in ("source", "split", "items", "rows", "answer_counts")})
    return files


@dataclass
class Scan:
    """What one pass over all (left, right) pairs found."""

    counts: np.ndarray  # [right comparison][distance 0..MAX_REPORTED_DISTANCE]: pairs
    closest: np.ndarray  # (distance, left, right) rows of the closest pairs, at most MAX_LISTED_PAIRS, sorted
    left_skip: np.ndarray  # bool per left image: within `distance` of an evaluation photo
    right_skip: np.ndarray  # bool per right image: within `distance` of a left image that is kept
    seconds: float


def scan(left: np.ndarray, right: np.ndarray, right_evaluation: np.ndarray, right_group: np.ndarray,
         distance: Optional[int], same_file: tuple = (np.zeros(0, int), np.zeros(0, int)), groups: int = 1,
         progress: bool = False) -> Scan:  # fmt: skip
    """Compare every left hash with every right hash (uint64 arrays) in one vectorised pass.

    right_evaluation: bool per right image (evaluation photos make the left image skip; other right
    images skip themselves). right_group: which comparison each right image belongs to (for counts).
    same_file: (left, right) index pairs that are one file, never a pair. distance: None = count only.
    The distance matrix is computed in tiles small enough for the CPU cache (BLOCK_ROWS x BLOCK_COLUMNS:
    1.6 ns per pair here against 2.7 ns for whole rows of 85,000), and only the few pairs within
    reach of a threshold are kept from each.
    """
    started = time.perf_counter()
    threshold = MAX_REPORTED_DISTANCE if distance is None else max(distance, MAX_REPORTED_DISTANCE)
    counts = np.zeros((groups, MAX_REPORTED_DISTANCE + 1), dtype=np.int64)
    left_skip = np.zeros(len(left), dtype=bool)
    right_hit = np.zeros(len(right), dtype=bool)
    closest = np.zeros((0, 3), dtype=np.int64)
    self_left, self_right = (np.asarray(side, dtype=np.int64) for side in same_file)
    rows, columns = BLOCK_ROWS, max(1, BLOCK_ELEMENTS // BLOCK_ROWS)
    xor = np.empty((rows, min(columns, max(len(right), 1))), dtype=np.uint64)
    bits = np.empty(xor.shape, dtype=np.uint8)
    for top in tqdm(range(0, len(left), rows), desc="Comparing perceptual hashes", unit=" blocks", disable=not progress):
        block = left[top : top + rows]
        near = [_near_in_tile(block, top, right, first, xor, bits, threshold, self_left, self_right)
                for first in range(0, len(right), columns)]  # fmt: skip
        near = [found for found in near if found is not None]
        if not near:
            continue  # the usual block: nothing near
        near_left, near_right, near_bits = (np.concatenate(parts) for parts in zip(*near))
        reported = near_bits <= MAX_REPORTED_DISTANCE
        np.add.at(counts, (right_group[near_right[reported]], near_bits[reported]), 1)
        closest = _closest(closest, near_bits[reported], near_left[reported], near_right[reported])
        if distance is not None:
            within = near_bits <= distance
            left_skip[near_left[within & right_evaluation[near_right]]] = True
            right_hit[near_right[within & ~left_skip[near_left]]] = True
    right_skip = right_hit & ~right_evaluation
    return Scan(counts, closest, left_skip, right_skip, time.perf_counter() - started)


def _near_in_tile(block, top, right, first, xor, bits, threshold, self_left, self_right):
    """(left indices, right indices, distances) of the pairs within `threshold` in one tile, or None."""
    tile = right[first : first + xor.shape[1]]
    xor_tile, dist = xor[: len(block), : len(tile)], bits[: len(block), : len(tile)]
    np.bitwise_xor(block[:, None], tile[None, :], out=xor_tile)
    np.bitwise_count(xor_tile, out=dist)
    if len(self_left):
        mine = (self_left >= top) & (self_left < top + len(block)) & (self_right >= first) & (self_right < first + len(tile))
        # A file is never its own near duplicate: farther than any two hashes can be (64 bits), even at distance 64.
        dist[self_left[mine] - top, self_right[mine] - first] = NEVER_NEAR
    if dist.min() > threshold:
        return None
    near_left, near_right = np.nonzero(dist <= threshold)
    return near_left + top, near_right + first, dist[near_left, near_right].astype(np.int64)


def _closest(best: np.ndarray, distances: np.ndarray, lefts: np.ndarray, rights: np.ndarray) -> np.ndarray:
    """The MAX_LISTED_PAIRS smallest (distance, left, right) of both, sorted: deterministic ties."""
    rows = np.concatenate([best, np.stack([distances, lefts, rights], axis=1)])
    order = np.lexsort((rows[:, 2], rows[:, 1], rows[:, 0]))
    return rows[order[:MAX_LISTED_PAIRS]]


@dataclass
class NImages:
    """Part (2)'s other side: GQA `n...` members of images.zip, or why they were not read."""

    records: list = field(default_factory=list)  # hashed-image records, split N_IMAGES_SPLIT
    listed: int = 0
    unreadable: int = 0  # missing or corrupt members: counted, not compared
    skipped_because: Optional[str] = None


def hash_n_images(archive: str, pin: Optional[dict] = None, progress: bool = True) -> NImages:
    """Hash every `images/n<digits>.jpg` member of GQA's images.zip (`archive`: a path or URL, read at the
    version the build pinned, `pin`)."""
    store = ImageStore(archive, "images", pin=pin)
    try:
        names = sorted(name for name in store.member_names() if N_IMAGE_MEMBER.match(name))
        result = NImages(listed=len(names))
        for name in tqdm(names, desc="Hashing GQA n... images", unit=" images", disable=not progress):
            image = store.fetch(name[len("images/"):])
            if not isinstance(image, CheckedImage):
                result.unreadable += 1
                continue
            image_id = N_IMAGE_MEMBER.match(name).group(1)
            result.records.append(dict(source="gqa", split=N_IMAGES_SPLIT, image_id=image_id, file=name,
                                       phash=image.phash, items=0, rows=0, answer_counts={}))  # fmt: skip
        store.verify_unchanged()  # what was read, and counted unreadable, is of the pinned version
    finally:
        store.close()
    return result


@dataclass
class Audit:
    report: dict  # the build report's "near_duplicates"
    skipped: dict  # {source: {split: {reason: {"images", "items", "rows"}}}}
    dropped_rows: frozenset  # schema.image_key of the skipped images: the ids of their rows less the chunk


def audit(written: list, n_images: NImages, distance: Optional[int], progress: bool = True) -> Audit:
    """Compare the build's hashed images (stats.merge_hashed) and the `n...` images, and decide the skips."""
    files = by_file(written)
    train = sorted((f for f in files.values() if any(use["split"] == "train" for use in f.uses)), key=lambda f: f.file)
    others = sorted((f for f in files.values() if any(use["split"] == "validation" for use in f.uses)), key=lambda f: f.file)
    # Part (2): `n...` members not already compared as validation images.
    seen = {f.file for f in others}
    n_files = sorted((f for f in by_file(n_images.records).values() if f.file not in seen), key=lambda f: f.file)
    right = others + n_files
    right_index = {f.file: index for index, f in enumerate(right)}
    same_file = np.array([(index, right_index[f.file]) for index, f in enumerate(train) if f.file in right_index], dtype=np.int64)
    same_file = (same_file[:, 0], same_file[:, 1]) if len(same_file) else (np.zeros(0, int), np.zeros(0, int))
    result = scan(
        hashes_to_uint64(f.phash for f in train),
        hashes_to_uint64(f.phash for f in right),
        np.array([f.evaluation for f in right], dtype=bool),
        np.array([0] * len(others) + [1] * len(n_files), dtype=np.int64),
        distance,
        same_file,
        groups=2,
        progress=progress,
    )
    logger.info("near-duplicate audit: %d train images against %d others in %.1f s", len(train), len(right), result.seconds)
    skipped, dropped = _skips([(result.left_skip, train, EVAL_REASON, "train"), (result.right_skip, right, TRAIN_REASON, "validation")])
    report = {
        "distance": distance,
        "hash": "imagehash.phash, hash_size 8, of the 1/4-scale grayscale JPEG draft (metadata.phash)",
        "max_reported_distance": MAX_REPORTED_DISTANCE,
        "comparisons": {
            VALIDATION_COMPARISON: {
                "train_images": len(train),
                "other_images": len(others),
                "pairs_by_distance": _by_distance(result.counts[0]),
            },
            N_IMAGES_COMPARISON: _n_images_entry(n_images, len(train), len(n_files), result.counts[1]),
        },
        "closest_pairs": [
            {"distance": int(d), "train": train[i].describe(), "other": right[j].describe()} for d, i, j in result.closest
        ],
        "removed": skipped,
    }
    return Audit(report, skipped, dropped)


def _skips(sides: list) -> tuple[dict, frozenset]:
    """What the chosen files of each side lose: ({source: {split: {reason: counts}}}, row-id prefixes to drop).
    Only the uses of the side's own split count (a COCO file is skipped in every source's train rows)."""
    skipped: dict = {}
    dropped = set()
    for chosen, files, reason, split in sides:
        for index in np.flatnonzero(chosen):
            for use in files[index].uses:
                if use["split"] != split or not use["rows"]:
                    continue
                counts = skipped.setdefault(use["source"], {}).setdefault(split, {})
                counts = counts.setdefault(reason, {"images": 0, "items": 0, "rows": 0})
                counts["images"] += 1
                counts["items"] += use["items"]
                counts["rows"] += use["rows"]
                for count, questions in use["answer_counts"].items():  # VQAv2, OK-VQA: the report's histogram loses them
                    histogram = counts.setdefault("answer_counts", {})
                    histogram[count] = histogram.get(count, 0) + questions
                dropped.add(image_key(use["source"], ORIGINAL_SPLITS[use["source"]][split], files[index].image_id))
    return skipped, frozenset(dropped)


def _by_distance(counts: np.ndarray) -> dict:
    return {str(d): int(count) for d, count in enumerate(counts)}


def _n_images_entry(n_images: NImages, train_images: int, compared: int, counts: np.ndarray) -> dict:
    if n_images.skipped_because is not None:
        return {"audited": False, "reason": n_images.skipped_because}
    return {
        "audited": True,
        "train_images": train_images,
        "other_images": compared,
        "listed": n_images.listed,
        "unreadable": n_images.unreadable,
        "pairs_by_distance": _by_distance(counts),
    }


def apply_skips(stats: dict, skipped: dict) -> dict:
    """The merged build stats with the audit's skips: items and rows move from written to skipped."""
    for source, splits in skipped.items():
        for split, reasons in splits.items():
            into = stats[source][split]
            for reason, counts in reasons.items():
                into["items_written"] -= counts["items"]
                into["rows_written"] -= counts["rows"]
                for count, questions in counts.get("answer_counts", {}).items():  # written questions leave the histogram
                    into["answer_counts"][count] -= questions
                into["skipped"][reason] = into["skipped"].get(reason, 0) + counts["items"]
            into["skipped"] = dict(sorted(into["skipped"].items()))
    return stats
