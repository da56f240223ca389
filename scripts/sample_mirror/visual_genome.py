"""Visual Genome's image_data.json.zip: the GQA -> COCO id map that leakage control relies on.

Some GQA train images are planned to be COCO val2014 photos and some GQA val images COCO train2014
photos, so a decontaminated build has something to skip; the plan records which (SplitPlan.coco_ids and
overlap) and the manifest reports them.  The map refers to the COCO image lists written by coco.py.
"""
from __future__ import annotations

import json
import random
import zipfile
from pathlib import Path

from sample_mirror.coco import coco_listed_ids
from sample_mirror.names import OTHER_SPLIT, SPLITS, VG_IMAGE_DATA_MEMBER, VG_IMAGE_DATA_ZIP
from sample_mirror.real_records import REAL_GQA_IMAGE_IDS, VG_REAL_RECORDS
from sample_mirror.zipjson import AtomicZip, zip_info


def plan_visual_genome(plans: dict, seed: int) -> None:
    """Give every numeric GQA imageId a Visual Genome coco_id (on its plan), in a fixed pattern over the
    invented, healthy images of each split: 1st, 4th, ... -> a COCO photo of the *other* split (the overlap a
    decontaminated build skips), 2nd, 5th, ... -> null, 3rd, 6th, ... -> a COCO photo of the same split (kept).
    Real and broken imageIds map to null; `n...` imageIds are not Visual Genome images and get no record."""
    listed = coco_listed_ids(plans, seed)
    for split in SPLITS:  # healthy COCO photos first, so that an overlap is visible in the coco rows too
        broken = plans[("coco", split)].missing | plans[("coco", split)].corrupt if ("coco", split) in plans else set()
        listed[split] = [i for i in listed[split] if i not in broken] + [i for i in listed[split] if i in broken]
    for split in SPLITS:
        plan = plans[("gqa", split)]
        plan.coco_ids, plan.overlap = {}, []
        invented = [i for i in plan.image_ids if not i.startswith("n") and i not in REAL_GQA_IMAGE_IDS
                    and i not in plan.missing and i not in plan.corrupt]
        for image_id in plan.image_ids:
            if not image_id.startswith("n"):
                plan.coco_ids[image_id] = None
        for k, image_id in enumerate(invented):
            pool = {0: listed[OTHER_SPLIT[split]], 2: listed[split]}.get(k % 3)
            if pool:
                plan.coco_ids[image_id] = pool[(k // 3) % len(pool)]
                if k % 3 == 0:
                    plan.overlap.append(image_id)
    _at_least_one_coco_id(plans, listed)


def _at_least_one_coco_id(plans: dict, listed: dict) -> None:
    """The official map gives about half of its images a coco_id, and leakage control refuses a map with
    none. A mirror too small to have invented healthy GQA images (a few images per split) gets one all the
    same: its first numeric broken (else real) image is mapped to a COCO photo of its own split, which is
    no overlap, so every skip and row stays as without it. Larger mirrors are not touched."""
    if any(c is not None for split in SPLITS for c in plans[("gqa", split)].coco_ids.values()):
        return
    for split in SPLITS:
        plan = plans[("gqa", split)]
        numeric = sorted(plan.coco_ids)
        broken = [i for i in numeric if i in plan.missing or i in plan.corrupt]
        for image_id in broken + [i for i in numeric if i not in broken]:
            if listed[split]:
                plan.coco_ids[image_id] = listed[split][0]
                return


def write_visual_genome(out: Path, plans: dict, seed: int) -> list[str]:
    """image_data.json.zip: one JSON list of {width, url, height, image_id, coco_id, flickr_id} in ascending
    image_id order, as the real file; every other generated record says `id` instead of `image_id`, as some
    readers write it."""
    plan_visual_genome(plans, seed)
    coco_ids = {int(i): c for split in SPLITS for i, c in plans[("gqa", split)].coco_ids.items()}
    records = list(VG_REAL_RECORDS)
    for n, image_id in enumerate(sorted(coco_ids)):
        rng = random.Random(f"vg-image:{seed}:{image_id}")
        width, height = rng.choice([(800, 600), (500, 333), (640, 480), (1024, 768)])
        coco_id = coco_ids[image_id]
        record = {"width": width, "url": f"https://cs.stanford.edu/people/rak248/VG_100K/{image_id}.jpg",
                  "height": height, "image_id": image_id, "coco_id": coco_id,
                  "flickr_id": rng.randrange(10**9, 10**10) if coco_id is not None else None}
        if n % 2:
            record = {("id" if key == "image_id" else key): value for key, value in record.items()}
        records.append(record)
    with AtomicZip(out / VG_IMAGE_DATA_ZIP) as zf:
        with zf.open(zip_info(VG_IMAGE_DATA_MEMBER, zipfile.ZIP_DEFLATED), "w") as fh:
            fh.write(json.dumps(records).encode())
    return [VG_IMAGE_DATA_ZIP]
