"""Planning: which images and questions each source/split holds, which are broken, and each image's mode.

Everything the writers and the manifest need is decided here first, as plain data (SplitPlan,
ImageZipPlan), before any file is written: the record writers, the image archives and the manifest then
read the same decisions, so the manifest's expected skips always describe the files.  Ids come from
seeded, prefix-stable pools, so one source's or split's size never moves another's ids.
"""
from __future__ import annotations

import random
import zlib
from dataclasses import dataclass, field
from typing import Iterable, Iterator

from sample_mirror.names import COCO_FAMILY, COCO_IMAGE_ZIPS, COCO_SUB, GQA_IMAGES_ZIP, GQA_SUB, SPLITS
from sample_mirror.real_records import (OKVQA_REAL_QUESTIONS, REAL_COCO_IDS, REAL_GQA_IMAGE_IDS, REAL_IMAGE_IDS,
                                        VQAV2_REAL_ANNOTATIONS)


@dataclass
class SplitPlan:
    """Everything about one source/split that the writers and the manifest need."""
    source: str
    split: str
    original_split: str
    image_ids: list                        # native type: int (COCO ids) or str (GQA imageIds), file order
    missing: set = field(default_factory=set)
    corrupt: set = field(default_factory=set)
    # VQA sources: question ids per image (annotated ones), and the extra question ids without annotation
    questions: dict = field(default_factory=dict)        # image_id -> [qid ...] (annotated)
    orphans: dict = field(default_factory=dict)          # qid -> image_id (question without annotation)
    quirks: dict = field(default_factory=dict)           # quirk name -> list of record ids
    # GQA: Visual Genome's coco_id of each numeric imageId (None: not a COCO photo), and the images whose
    # photo is a COCO photo of the other split (skipped as OVERLAP_REASON[split] by a decontaminated build)
    coco_ids: dict = field(default_factory=dict)
    overlap: list = field(default_factory=list)


@dataclass
class ImageZipPlan:
    """One image archive: which images it holds and how each is encoded."""
    name: str
    prefix: str                    # folder inside the zip: "train2014/", "images/"
    modes: dict = field(default_factory=dict)   # image_id -> "RGB" | "L" | "CMYK" | "PNG"
    missing: set = field(default_factory=set)   # referenced, deliberately absent
    corrupt: set = field(default_factory=set)   # truncated JPEG
    # image_id -> (the original's zip, its image_id, scale, JPEG quality): a re-hosted copy (near_duplicates.py)
    copies: dict = field(default_factory=dict)

    def member(self, image_id) -> str:
        if self.prefix == "images/":
            return f"images/{image_id}.jpg"
        sub = self.prefix.rstrip("/")
        return f"{sub}/COCO_{sub}_{int(image_id):012d}.jpg"


def _coco_split_of(image_id: int) -> str:
    # COCO ids are unique across 2014 splits; a fixed hash partition keeps invented train and val ids
    # disjoint without one split's count influencing the other's ids.
    return "validation" if (image_id * 2654435761) % 1000 < 330 else "train"


def coco_id_pool(seed: int, split: str) -> Iterator[int]:
    """Endless stream of unique invented COCO image ids of one split (prefix-stable for a seed)."""
    rng = random.Random(f"coco-pool:{seed}:{split}")
    seen = set()
    while True:
        image_id = rng.randrange(1, 581930)
        if image_id in seen or image_id in REAL_COCO_IDS or _coco_split_of(image_id) != split:
            continue
        seen.add(image_id)
        yield image_id


def _gqa_split_of(image_id: str) -> str:
    bucket = zlib.crc32(image_id.encode()) % 20
    return "test" if bucket == 0 else "validation" if bucket <= 4 else "train"


def gqa_id_pool(seed: int, split: str, n_prefixed_only: bool = False) -> Iterator[str]:
    """Endless stream of unique invented GQA imageIds: Visual Genome numbers, about 1 in 8 `n`-prefixed."""
    rng = random.Random(f"gqa-pool:{seed}:{split}:{n_prefixed_only}")
    seen = set()
    while True:
        if n_prefixed_only or rng.random() < 0.125:
            image_id = f"n{rng.randrange(1, 581924)}"
        else:
            image_id = str(rng.randrange(1, 2417998))
        if image_id in seen or image_id in REAL_GQA_IMAGE_IDS or _gqa_split_of(image_id) != split:
            continue
        seen.add(image_id)
        yield image_id


class _LazyPool:
    """Random-access view over an id stream, so several sources can share its prefix."""

    def __init__(self, stream: Iterator, exclude: Iterable = ()):
        self._stream, self._items, self._exclude = stream, [], set(exclude)

    def __getitem__(self, index: int):
        while len(self._items) <= index:
            item = next(self._stream)
            if item not in self._exclude:
                self._items.append(item)
        return self._items[index]

    def take(self, start: int, count: int) -> list:
        return [self[i] for i in range(start, start + count)]


def _source_image_list(count: int, specials: list, real: list, pool: _LazyPool) -> list:
    """[broken specials] + [real ids] + invented ids, truncated to `count`.

    Broken specials come first so that even a tiny split carries them; the invented ids are the pool's
    prefix, so sources of the same zip share images (as VQAv2/OK-VQA images are COCO images)."""
    head = (specials + real)[:count]
    return head + pool.take(0, count - len(head))


def _assign_modes(zip_plan: ImageZipPlan, lists: list[list]) -> None:
    """Give every image in the zip a mode; put one L, one CMYK and one PNG-in-.jpg on healthy images.

    The sources' lists are interleaved round-robin so the special modes spread over the sources that
    share the zip, and the first image (a real record where there is one) stays plain RGB."""
    order, seen = [], set()
    for column in range(max((len(ids) for ids in lists), default=0)):
        for ids in lists:
            if column < len(ids) and ids[column] not in seen:
                seen.add(ids[column])
                order.append(ids[column])
    healthy = [i for i in order if i not in zip_plan.missing and i not in zip_plan.corrupt]
    for image_id in order:
        if image_id not in zip_plan.missing:
            zip_plan.modes[image_id] = "RGB"
    for image_id, mode in zip(healthy[1:], ("L", "CMYK", "PNG")):
        zip_plan.modes[image_id] = mode


def plan_vqa_questions(plan: SplitPlan, per_image: int, broken: bool) -> None:
    """Question ids per image (VQAv2: image_id*1000+k; OK-VQA: image_id*10+5, one per image as in the real
    files) and the one question without annotation (next k: VQAv2 image_id*1000+Q, OK-VQA image_id*10+6)."""
    healthy = [i for i in plan.image_ids if i not in plan.missing and i not in plan.corrupt]
    for image_id in plan.image_ids:
        if plan.source == "vqav2":
            plan.questions[image_id] = [image_id * 1000 + k for k in range(per_image)]
        else:
            plan.questions[image_id] = [image_id * 10 + 5]
    if broken and healthy:
        # An extra question on the last healthy image, present in the questions file only: the image still
        # has its annotated questions, so the builder must drop just this one (reason no_annotation).
        image_id = healthy[-1]
        qid = image_id * 1000 + per_image if plan.source == "vqav2" else image_id * 10 + 6
        plan.orphans[qid] = image_id


def _pick(preferred: list, fallback: list, exclude: set = frozenset()):
    for candidate in list(preferred) + list(fallback):
        if candidate not in exclude:
            return candidate
    return None


def plan_quirk_targets(plan: SplitPlan) -> None:
    """Choose the records that carry per-record quirks (real records where the reference has them)."""
    healthy = [i for i in plan.image_ids if i not in plan.missing and i not in plan.corrupt]
    annotated = [q for i in healthy for q in plan.questions[i]]
    present = set(annotated)
    if plan.source == "vqav2":
        # fallbacks are invented records only: real ones keep their quoted answers
        invented = [q for q in annotated if q not in VQAV2_REAL_ANNOTATIONS]
        mismatch = _pick([q for q in (393714000,) if q in present], invented)
        shuffled = _pick([q for q in (263006001,) if q in present], invented[1:] + invented, {mismatch})
        plan.quirks["answers0_differs_from_mca"] = [mismatch] if mismatch is not None else []
        plan.quirks["answer_ids_listed_shuffled"] = [shuffled] if shuffled is not None else []
        # The majority answer spelled otherwise by some references (they still agree with it under the
        # official evaluation's normalisation) or by all ten (then nothing is normalised: none agrees).
        some = _pick(invented[2:], invented, {mismatch, shuffled})
        every = _pick(invented[3:], invented, {mismatch, shuffled, some})
        plan.quirks["some_references_spell_the_answer_differently"] = [some] if some is not None else []
        plan.quirks["all_references_spell_the_answer_differently"] = [every] if every is not None else []
    elif plan.source == "okvqa":
        invented = [q for q in annotated if q not in OKVQA_REAL_QUESTIONS]
        tie = _pick([q for q in (516065,) if q in present], invented)
        unknown_type = _pick([], invented[1:] + invented, {tie})
        plan.quirks["majority_tie_first_wins"] = [tie] if tie is not None else []
        plan.quirks["question_type_not_in_map"] = [unknown_type] if unknown_type is not None else []


def plan_coco_family(counts: dict, sources: tuple, broken: bool, seed: int):
    plans, zips = {}, {}
    for split in SPLITS:
        sub = COCO_SUB[split]
        zip_plan = ImageZipPlan(COCO_IMAGE_ZIPS[split], f"{sub}/")
        stream = coco_id_pool(seed, split)
        # The first two invented ids of each split are reserved for the broken cases (shared by every
        # source of the zip), whether or not broken=True, so the other ids do not move.
        specials = [next(stream), next(stream)]
        pool = _LazyPool(stream)
        lists = []
        for source in COCO_FAMILY:
            if source not in sources:
                continue
            ids = _source_image_list(counts[source][split], specials if broken else [],
                                     REAL_IMAGE_IDS[source][split], pool)
            plan = SplitPlan(source, split, sub, ids)
            if broken:
                plan.missing = {specials[0]} & set(ids)
                plan.corrupt = {specials[1]} & set(ids)
                zip_plan.missing |= plan.missing
                zip_plan.corrupt |= plan.corrupt
            plans[(source, split)] = plan
            lists.append(ids)
        if lists:
            _assign_modes(zip_plan, lists)
            zips[split] = zip_plan
    return plans, zips


def plan_gqa(counts: dict, broken: bool, seed: int):
    plans = {}
    zip_plan = ImageZipPlan(GQA_IMAGES_ZIP, "images/")
    for split in SPLITS:
        stream = gqa_id_pool(seed, split)
        specials = [next(stream), next(stream)]
        real = list(REAL_IMAGE_IDS["gqa"][split])
        if split == "validation":  # make sure validation has an `n`-prefixed imageId early on
            real.append(next(gqa_id_pool(seed, split, n_prefixed_only=True)))
        pool = _LazyPool(stream, exclude=real)
        ids = _source_image_list(counts["gqa"][split], specials if broken else [], real, pool)
        plan = SplitPlan("gqa", split, GQA_SUB[split], ids)
        if broken:
            plan.missing = {specials[0]} & set(ids)
            plan.corrupt = {specials[1]} & set(ids)
            zip_plan.missing |= plan.missing
            zip_plan.corrupt |= plan.corrupt
        plans[("gqa", split)] = plan
    for split in SPLITS:  # one L, CMYK and PNG per split (train and val imageIds are disjoint)
        _assign_modes(zip_plan, [plans[("gqa", split)].image_ids])
    return plans, zip_plan
