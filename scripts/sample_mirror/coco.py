"""COCO Captions 2014: annotations_trainval2014.zip with the captions files and stand-ins for the others.

Captions are in ascending id order with images interleaved, as in the real file; every image has five,
one has seven, and a few carry raw whitespace junk.  The image lists are written even without the coco
source, because GQA's leakage control (visual_genome.py) maps GQA images onto them.
"""
from __future__ import annotations

import itertools
import random
from pathlib import Path
from typing import Callable

from sample_mirror.names import COCO_ANNOTATIONS_ZIP, COCO_SUB, SPLITS
from sample_mirror.plan import SplitPlan, coco_id_pool
from sample_mirror.real_records import COCO_INFO, COCO_LICENSES, COCO_REAL_CAPTIONS, COCO_REAL_IMAGES
from sample_mirror.vocabulary import CAPTION_OBJECTS, CAPTION_SUBJECTS, CAPTION_VERBS
from sample_mirror.zipjson import AtomicZip, Stream, write_json_member


def _invented_caption(rng: random.Random) -> str:
    return f"{rng.choice(CAPTION_SUBJECTS)} {rng.choice(CAPTION_VERBS)} {rng.choice(CAPTION_OBJECTS)}" + rng.choice([".", ".", ""])


def _coco_captions(plan: SplitPlan, seed: int) -> list[tuple[int, int, str]]:
    """(caption id, image id, caption) in file order: ascending ids, images interleaved.

    Every image gets 5 captions, one healthy image gets 7; some captions carry raw whitespace junk."""
    rng = random.Random(f"coco-captions:{seed}:{plan.split}")
    real = [c for c in COCO_REAL_CAPTIONS[plan.split] if c[1] in plan.image_ids]
    real_count = {i: sum(1 for c in real if c[1] == i) for i in plan.image_ids}
    healthy = [i for i in plan.image_ids if i not in plan.missing and i not in plan.corrupt]
    seven = healthy[1] if len(healthy) > 1 else (healthy[0] if healthy else None)
    pending = []  # (image id, caption) still needing an id
    for image_id in plan.image_ids:
        wanted = 7 if image_id == seven else 5
        pending += [(image_id, _invented_caption(rng)) for _ in range(wanted - real_count[image_id])]
    rng.shuffle(pending)  # not grouped by image, as in the real file

    # whitespace quirks on captions of healthy images, so they reach rows
    junk = {"newline": lambda c: c.replace(" ", " \n", 1), "space_runs": lambda c: c.replace(" ", "  ", 2).replace(" a ", " a   ", 1),
            "leading_trailing_spaces": lambda c: "  " + c + " "}
    plan.quirks.update({name: [] for name in junk})
    targets = {}
    for n, name in enumerate(junk):
        if healthy:
            targets[name] = healthy[n % len(healthy)]
    captions, next_id = list(real), max([c[0] for c in real], default=0)
    for image_id, text in pending:
        next_id += rng.randint(1, 40)
        if next_id == image_id:  # caption ids are unrelated to image ids; avoid even an accidental match
            next_id += 1
        for name, target in list(targets.items()):
            if target == image_id:
                text = junk[name](text)
                plan.quirks[name].append(next_id)
                del targets[name]
                break
        captions.append((next_id, image_id, text))
    plan.quirks["more_than_5_captions"] = [seven] if seven is not None else []
    return captions


def _coco_image_entry(rng: random.Random, image_id: int, sub: str, size: tuple[int, int]) -> dict:
    if image_id in COCO_REAL_IMAGES:
        entry = dict(COCO_REAL_IMAGES[image_id])
    else:
        file_name = f"COCO_{sub}_{image_id:012d}.jpg"
        entry = {"license": rng.randint(1, 8), "file_name": file_name,
                 "coco_url": f"http://images.cocodataset.org/{sub}/{file_name}",
                 "height": 0, "width": 0,
                 "date_captured": f"2013-{rng.randint(11, 12)}-{rng.randint(10, 28)} "
                                  f"{rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}:{rng.randint(0, 59):02d}",
                 "flickr_url": f"http://farm{rng.randint(1, 9)}.staticflickr.com/{rng.randint(1, 9000)}/"
                               f"{rng.randint(10**9, 10**10 - 1)}_{rng.getrandbits(40):010x}_z.jpg",
                 "id": image_id}
    entry["width"], entry["height"] = size  # must describe the stored JPEG's pixel grid
    return entry


def _coco_stub(kind: str) -> dict:
    """Tiny stand-ins for the instances/person_keypoints files, which the builder must not read."""
    stub = {"info": COCO_INFO, "licenses": COCO_LICENSES, "images": [], "annotations": [],
            "categories": [{"supercategory": "person", "id": 1, "name": "person"}]}
    if kind == "person_keypoints":
        stub["categories"][0].update({"keypoints": ["nose", "left_eye", "right_eye"], "skeleton": [[1, 2], [1, 3]]})
    return stub


def coco_listed_ids(plans: dict, seed: int) -> dict[str, list[int]]:
    """The image ids of captions_{train,val}2014.json: the coco source's images, or (a mirror without the coco
    source, which GQA's leakage control still needs the two image lists of) a few invented COCO ids."""
    if ("coco", "train") in plans:
        return {split: list(plans[("coco", split)].image_ids) for split in SPLITS}
    listed = {}
    for split in SPLITS:
        stream = coco_id_pool(seed, split)
        next(stream), next(stream)  # the broken specials of the coco family
        listed[split] = list(itertools.islice(stream, 4))
    return listed


def write_coco_annotations(out: Path, plans: dict, seed: int, size_of: Callable[[int], tuple[int, int]]) -> list[str]:
    with AtomicZip(out / COCO_ANNOTATIONS_ZIP) as zf:
        for kind in ("instances", "person_keypoints"):
            for split in SPLITS:
                write_json_member(zf, f"annotations/{kind}_{COCO_SUB[split]}.json", list(_coco_stub(kind).items()))
        listed = coco_listed_ids(plans, seed)
        for split in SPLITS:
            plan = plans.get(("coco", split)) or SplitPlan("coco", split, COCO_SUB[split], listed[split])
            sub = COCO_SUB[split]
            rng = random.Random(f"coco-images:{seed}:{split}")
            # image list order: the reference's first val images first, the rest shuffled
            order = list(plan.image_ids)
            rng.shuffle(order)
            order = [i for i in (391895, 522418) if i in order] + [i for i in order if i not in (391895, 522418)]
            images = [_coco_image_entry(rng, i, sub, size_of(i)) for i in order]
            captions = [{"image_id": image_id, "id": cid, "caption": text}
                        for cid, image_id, text in _coco_captions(plan, seed)] if ("coco", split) in plans else []
            write_json_member(zf, f"annotations/captions_{sub}.json", [
                ("info", COCO_INFO), ("images", Stream("list", images)), ("licenses", COCO_LICENSES),
                ("annotations", Stream("list", captions))])
    return [COCO_ANNOTATIONS_ZIP]
