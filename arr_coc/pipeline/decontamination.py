"""Leakage control: no photo in both of our splits, and no COCO val2014 photo in `train`.

COCO-sourced rows (VQAv2, OK-VQA, COCO Captions) are split-clean by construction: COCO 2014 train
and val ids are disjoint, and each of our splits takes one of them. GQA's train/val images are
Visual Genome images, and many of those are COCO 2014 photos; Visual Genome's `image_data.json` says
which (`coco_id`). So only GQA images are checked:
  - a `train` image whose photo is in `captions_val2014.json`'s image list -> `eval_overlap`;
  - a `validation` image whose photo is in `captions_train2014.json`'s image list -> `train_overlap`.
GQA testdev/test `n...` images are not Visual Genome images; no map covers them.

The three id lists are read once per build, in the main process (`read_photo_ids`, called from the
builder's `_split_generators`); each GQA shard receives the compact result (`GqaPhotos`) as plain
data in its `gen_kwargs`, so `num_proc` workers and DataLoader workers never re-read the files.

Leakage control never runs on incomplete inputs: the official files never look like that, so the
build stops in one line naming the file when an id list is empty or missing (either COCO captions
file's `images`), when no Visual Genome image has a `coco_id`, or when a GQA question names a decimal
imageId that `image_data.json` does not list (it lists every GQA train/val image: all of them are
Visual Genome images). `n...` imageIds are not Visual Genome images and are not looked up.
"""

import logging
from dataclasses import dataclass, field
from typing import Mapping, Optional

from ..network.remote import STREAM_BLOCK_SIZE, open_archive_member, open_zip
from ..process.errors import SourceFormatError
from ..readers import coco, vg

logger = logging.getLogger(__name__)

COCO_ARCHIVE = "annotations_trainval2014.zip"
CAPTIONS_MEMBERS = {
    "train2014": "annotations/captions_train2014.json",
    "val2014": "annotations/captions_val2014.json",
}
# split of ours -> (skip reason, the COCO 2014 split whose photos it must not hold)
RULES = {"train": ("eval_overlap", "val2014"), "validation": ("train_overlap", "train2014")}
REASONS = tuple(reason for reason, _ in RULES.values())
OFF_HINT = "build with --no-decontaminate (decontaminate=False) to go without it"
NOT_OFFICIAL = "not the official file, and leakage control cannot run on it: use the official file, or " + OFF_HINT


@dataclass(eq=False)
class PhotoIds:
    """What the build read: Visual Genome's COCO ids and, with decontamination on, COCO's id lists."""

    coco_ids: dict[str, str]  # Visual Genome image id -> COCO id, only images that have one
    visual_genome_images: int
    coco_split_ids: Optional[dict[str, frozenset]] = None  # "train2014"/"val2014" -> image ids (strings)
    files: dict = field(default_factory=dict)  # "archive/member" -> what it held, for the build report
    listed: frozenset = frozenset()  # every Visual Genome image id of the map, with or without a COCO id
    map_file: Optional[str] = None  # "location:image_data.json", for errors


@dataclass(eq=False)
class GqaPhotos:
    """What one split's GQA shards need: each image's COCO id, and which images cross the boundary."""

    coco_ids: Mapping[str, str]
    overlap: frozenset = frozenset()  # Visual Genome image ids to skip in this split
    reason: Optional[str] = None
    listed: Optional[frozenset] = None  # with leakage control on: every image id the map lists
    map_file: Optional[str] = None

    def coco_id(self, image_id: str) -> Optional[str]:
        return self.coco_ids.get(image_id)

    def check_listed(self, image_id: str, questions_file: str) -> None:
        """A decimal GQA imageId the map does not list: the map is incomplete (see the module doc)."""
        if self.listed is not None and image_id not in self.listed and image_id.isdigit():
            raise SourceFormatError(
                self.map_file, f"has no record of GQA image {image_id} (in {questions_file}), but the official file "
                f"lists every GQA train/val image: {NOT_OFFICIAL}",
            )  # fmt: skip

    def skip_reason(self, image_id: str) -> Optional[str]:
        return self.reason if image_id in self.overlap else None


def read_visual_genome(location: str, pin: Optional[dict] = None) -> tuple[dict[str, str], frozenset]:
    """({Visual Genome image id: COCO id} for the images that have one, every image id listed)."""
    with open_zip(location, block_size=STREAM_BLOCK_SIZE, pin=pin) as archive:
        with open_archive_member(archive, location, vg.MEMBER) as stream:
            all_ids = vg.read_coco_ids(stream, f"{location}:{vg.MEMBER}")
    return {image_id: coco_id for image_id, coco_id in all_ids.items() if coco_id is not None}, frozenset(all_ids)


def read_coco_split_ids(location: str, pin: Optional[dict] = None) -> dict[str, frozenset]:
    """The image ids of `captions_train2014.json` and `captions_val2014.json` (their `images` lists)."""
    split_ids = {}
    with open_zip(location, block_size=STREAM_BLOCK_SIZE, pin=pin) as archive:
        for original_split, member in CAPTIONS_MEMBERS.items():
            with open_archive_member(archive, location, member, hint=f"which decontamination needs; {OFF_HINT}") as stream:
                split_ids[original_split] = frozenset(image_id for image_id, _ in coco.iter_images(stream, f"{location}:{member}"))
            if not split_ids[original_split]:
                raise SourceFormatError(f"{location}:{member}", f"its `images` list is empty: {NOT_OFFICIAL}")
    return split_ids


def read_photo_ids(image_data: Optional[str], coco_annotations: Optional[str], pins: Optional[Mapping[str, dict]] = None) -> PhotoIds:
    """Read the map (when `image_data` is given) and the COCO id lists (when `coco_annotations` is), each
    as the version `pins` names (the one the build's shards read too)."""
    coco_ids, listed = {}, frozenset()
    files, pins = {}, pins or {}
    map_file = f"{image_data}:{vg.MEMBER}" if image_data is not None else None
    if image_data is not None:
        logger.info("leakage control: reading %s", vg.ARCHIVE)
        coco_ids, listed = read_visual_genome(image_data, pins.get(image_data))
        files[f"{vg.ARCHIVE}/{vg.MEMBER}"] = {"images": len(listed), "images_with_coco_id": len(coco_ids)}
        if coco_annotations is not None and not coco_ids:
            raise SourceFormatError(map_file, f"no image has a coco_id (the official file maps about half of its "
                                              f"108,077 images to COCO photos): {NOT_OFFICIAL}")
    split_ids = None
    if coco_annotations is not None:
        logger.info("leakage control: reading the COCO 2014 image lists of %s", COCO_ARCHIVE)
        split_ids = read_coco_split_ids(coco_annotations, pins.get(coco_annotations))
        for original_split, member in CAPTIONS_MEMBERS.items():
            files[f"{COCO_ARCHIVE}/{member}"] = {"image_ids": len(split_ids[original_split])}
    return PhotoIds(coco_ids=coco_ids, visual_genome_images=len(listed), coco_split_ids=split_ids, files=files,
                    listed=listed, map_file=map_file)


def gqa_photos(ids: PhotoIds, split: str) -> GqaPhotos:
    """One split's view: every image keeps its COCO id; with the COCO lists, the crossing images are marked."""
    if ids.coco_split_ids is None:
        return GqaPhotos(coco_ids=ids.coco_ids)
    reason, forbidden_split = RULES[split]
    forbidden = ids.coco_split_ids[forbidden_split]
    overlap = frozenset(image_id for image_id, coco_id in ids.coco_ids.items() if coco_id in forbidden)
    return GqaPhotos(coco_ids=ids.coco_ids, overlap=overlap, reason=reason, listed=ids.listed, map_file=ids.map_file)
