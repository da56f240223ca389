"""Planted near duplicates (`near_duplicates=True`): re-hosted copies of images under other ids.

A re-host is what Visual Genome did to COCO photos and what a crawler does to anything: the same picture
resized and re-encoded, under an id no map links to the original. Four are planted, each a copy of a
healthy RGB image resized to 50-90 % and re-encoded at JPEG quality 70-90, so that a near-duplicate audit
has exactly these pairs to find (the generated pictures are otherwise far apart under pHash):
  * a GQA train image that is a COCO val2014 image (the build skips the train image: eval_near_duplicate);
  * a GQA validation image that is a COCO train2014 image (it skips the validation image: train_near_duplicate);
  * two `n...` members of images.zip, GQA testdev/test/challenge photos in no question file, that are a GQA
    train image and a COCO train2014 image (it skips those train images: eval_near_duplicate).
The copied GQA images have no Visual Genome coco_id, so the id check cannot see them. The manifest lists the
pairs ("near_duplicates"); the default mirror plants nothing, so every other expectation stays as it was.
"""
from __future__ import annotations

import io

from PIL import Image

from sample_mirror.names import COCO_FAMILY, COCO_IMAGE_ZIPS, GQA_IMAGES_ZIP, SPLITS
from sample_mirror.plan import gqa_id_pool
from sample_mirror.real_records import REAL_GQA_IMAGE_IDS, REAL_IMAGE_IDS

# (scale, JPEG quality) of each planted copy: the corners and the middle of the range a re-host spans.
REHOSTS = ((0.5, 70), (0.9, 90), (0.7, 80), (0.6, 75))


def rehost(data: bytes, scale: float, quality: int) -> bytes:
    """A re-hosted copy: decoded, resized to `scale` of each side, re-encoded as a baseline JPEG."""
    with Image.open(io.BytesIO(data)) as image:
        image = image.convert("RGB")
        size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
        buffer = io.BytesIO()
        image.resize(size, Image.Resampling.BICUBIC).save(buffer, "JPEG", quality=quality, optimize=False, progressive=False)
    return buffer.getvalue()


def plan_near_duplicates(plans: dict, coco_zips: dict, gqa_zip, seed: int) -> list[dict]:
    """Choose the images, register the copies on the zip plans (ImageZipPlan.copies), return the manifest's list.

    Needs GQA and a COCO-family source in both splits; raises ValueError naming what is too small."""
    if gqa_zip is None or not coco_zips.get("train") or not coco_zips.get("validation"):
        raise ValueError("near_duplicates needs gqa and one of vqav2, okvqa, coco among the sources")
    coco = {split: _healthy_coco(plans, coco_zips[split], split) for split in SPLITS}
    gqa_null = {split: _gqa_without_coco_id(plans[("gqa", split)], gqa_zip) for split in SPLITS}
    gqa_train_kept = [i for i in _healthy(plans[("gqa", "train")], gqa_zip) if i not in plans[("gqa", "train")].overlap]
    needs = {"COCO train2014 images": (coco["train"], 2), "COCO val2014 images": (coco["validation"], 1),
             "GQA train images without coco_id": (gqa_null["train"], 1),
             "GQA validation images without coco_id": (gqa_null["validation"], 1), "GQA train images": (gqa_train_kept, 2)}
    for what, (have, count) in needs.items():
        if len(have) < count:
            raise ValueError(f"near_duplicates needs at least {count} healthy invented {what}; the mirror has {len(have)}: "
                             "raise --images-per-split")
    train_copy, val_copy = gqa_null["train"][0], gqa_null["validation"][0]
    original_of_n = next(i for i in gqa_train_kept if i != train_copy)
    n_ids = _new_n_ids(seed, gqa_zip, 2)
    coco_val, coco_train = COCO_IMAGE_ZIPS["validation"], COCO_IMAGE_ZIPS["train"]
    # (copy, original, skip reason, the image skipped): each image as (family, split, archive, image_id)
    pairs = [
        (("gqa", "train", GQA_IMAGES_ZIP, train_copy), ("coco", "validation", coco_val, coco["validation"][0]),
         "eval_near_duplicate", "copy"),
        (("gqa", "validation", GQA_IMAGES_ZIP, val_copy), ("coco", "train", coco_train, coco["train"][0]),
         "train_near_duplicate", "copy"),
        (("gqa", "n_images", GQA_IMAGES_ZIP, n_ids[0]), ("gqa", "train", GQA_IMAGES_ZIP, original_of_n),
         "eval_near_duplicate", "original"),
        (("gqa", "n_images", GQA_IMAGES_ZIP, n_ids[1]), ("coco", "train", coco_train, coco["train"][1]),
         "eval_near_duplicate", "original"),
    ]
    zips = {GQA_IMAGES_ZIP: gqa_zip, **{zip_plan.name: zip_plan for zip_plan in coco_zips.values()}}
    planted = []
    for (copy, original, reason, skipped), (scale, quality) in zip(pairs, REHOSTS):
        zips[copy[2]].copies[copy[3]] = (original[2], original[3], scale, quality)
        zips[copy[2]].modes[copy[3]] = "RGB"  # a re-hosted copy is an RGB JPEG; an n... one is a member of its own
        planted.append({"copy": _describe(copy), "original": _describe(original), "scale": scale, "quality": quality,
                        "reason": reason, "skipped": _describe(copy if skipped == "copy" else original)})
    return planted


def _describe(image: tuple) -> dict:
    family, split, archive, image_id = image
    return {"family": family, "split": split, "archive": archive, "image_id": str(image_id)}


def _healthy(plan, zip_plan, rgb_only: bool = True) -> list:
    """Invented images that are whole (and RGB, for an original to copy from), not copies already."""
    broken = plan.missing | plan.corrupt | zip_plan.missing | zip_plan.corrupt
    real = REAL_GQA_IMAGE_IDS | {i for ids in REAL_IMAGE_IDS.values() for split_ids in ids.values() for i in split_ids}
    return [i for i in plan.image_ids if i not in broken and i not in real and i not in zip_plan.copies
            and (zip_plan.modes.get(i) == "RGB" or not rgb_only)]  # fmt: skip


def _healthy_coco(plans: dict, zip_plan, split: str) -> list:
    """Healthy invented RGB images of the split's COCO zip, in the order of the first family source that has them."""
    images = []
    for source in COCO_FAMILY:
        if (source, split) in plans:
            images += [i for i in _healthy(plans[(source, split)], zip_plan) if i not in images]
    return images


def _gqa_without_coco_id(plan, gqa_zip) -> list:
    """Numeric GQA images that Visual Genome maps to no COCO id (plan.coco_ids, see visual_genome.py): the
    copies' ids. RGB ones first: a copy replaces the picture, and with it an image of a special mode."""
    candidates = [i for i in _healthy(plan, gqa_zip, rgb_only=False) if not i.startswith("n") and plan.coco_ids.get(i, "") is None]
    return sorted(candidates, key=lambda i: gqa_zip.modes.get(i) != "RGB")


def _new_n_ids(seed: int, gqa_zip, count: int) -> list[str]:
    """`n...` ids that no question file and no other member uses."""
    pool = gqa_id_pool(seed, "test", n_prefixed_only=True)
    taken = set(gqa_zip.modes) | gqa_zip.missing
    ids = []
    while len(ids) < count:
        candidate = next(pool)
        if candidate not in taken:
            ids.append(candidate)
            taken.add(candidate)
    return ids
