#!/usr/bin/env python3
"""Write a small, deterministic *source mirror* of VQAv2, GQA 1.2, OK-VQA and COCO Captions 2014.

The mirror uses the official download file names, archive member names and JSON structures (see
DESIGN.md "Source mirror layout" and reference/source-formats.md), so the builder can be pointed at it
with ``data_dir=`` exactly as at the real downloads.  Tests, the offline demo and benchmarks use it.

What is in it:
  * real records quoted in the reference (VQAv2 458752000 "net", the 393714000 annotation, 263006000/1,
    OK-VQA 516065/817215/4802085, GQA "02930152" and the parrot "05515938", COCO val images
    391895/522418, train captions 48/67/126/148, val captions 37/38/49), everything else invented
    deterministically from ``seed``;
  * the format quirks a builder has to cope with (listed in the manifest under "quirks");
  * Visual Genome's ``image_data.json.zip`` (the GQA -> COCO id map; written with GQA, together with
    ``annotations_trainval2014.zip`` whose image lists the map refers to): some GQA train images are COCO
    val2014 photos and some GQA val images COCO train2014 photos (``overlap`` and ``coco_ids`` in the
    manifest; their questions are in ``expected_skipped`` as eval_overlap / train_overlap), others null;
  * with ``broken=True`` a few deliberately broken cases: a truncated JPEG, an image that is referenced but
    absent from its zip, and questions without annotation.  Their expected effect on a build is in the
    manifest (``expected_skipped``).

Everything is a pure function of the parameters: zip entries carry a fixed timestamp, JSON is written in a
fixed order and images are encoded with fixed settings, so two runs give byte-identical files.

The manifest (``sample_mirror_manifest.json``, also returned by write_sample_mirror) is not an official
file; the builder ignores it.  Keys: seed, params (with the resolved per-source image counts), files
({name: {bytes, sha256}}), sources ({source: {"train"|"validation": {original_split, image_archive,
image_ids, items_total, expected_skipped, broken, image_modes}}}) and quirks (which records carry which
quirk).  items_total counts questions (VQA sources: distinct ids over questions and annotations files) or
images (coco); expected_skipped counts those items a correct build skips, uncapped: a question without
annotation is no_annotation, else a missing or truncated image gives missing_image / corrupt_image.

Usage:
    python scripts/make_sample_mirror.py OUT_DIR [--images-per-split N] [--questions-per-image Q]
        [--image-size WxH] [--gqa-images N] [--vqav2-images N] [--okvqa-images N] [--coco-images N]
        [--sources vqav2,gqa,okvqa,coco] [--no-broken] [--seed S]
"""
from __future__ import annotations

import argparse
import hashlib
import io
import itertools
import json
import logging
import os
import random
import re
import sys
import time
import zipfile
import zlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np
from PIL import Image

log = logging.getLogger("make_sample_mirror")

SOURCES = ("vqav2", "gqa", "okvqa", "coco")
COCO_FAMILY = ("vqav2", "okvqa", "coco")  # sources whose images live in train2014.zip / val2014.zip
SPLITS = ("train", "validation")
COCO_SUB = {"train": "train2014", "validation": "val2014"}
GQA_SUB = {"train": "train_balanced", "validation": "val_balanced"}
MANIFEST_NAME = "sample_mirror_manifest.json"

# DOS timestamps have a 2-second resolution; a fixed one keeps two runs byte-identical.
ZIP_DATE_TIME = (2017, 4, 26, 17, 7, 12)
JPEG_QUALITY = 90
# Above this many estimated bytes a streamed member is opened with ZIP64 from the start (zipfile cannot
# switch to ZIP64 once it has started writing a member of unknown size).
ZIP64_THRESHOLD = 1 << 30

# --------------------------------------------------------------------------------------------------------
# File names: official base names and members (reference/source-formats.md).
# --------------------------------------------------------------------------------------------------------
VQAV2_FILES = {
    ("questions", "train"): ("v2_Questions_Train_mscoco.zip", "v2_OpenEnded_mscoco_train2014_questions.json"),
    ("questions", "validation"): ("v2_Questions_Val_mscoco.zip", "v2_OpenEnded_mscoco_val2014_questions.json"),
    ("annotations", "train"): ("v2_Annotations_Train_mscoco.zip", "v2_mscoco_train2014_annotations.json"),
    ("annotations", "validation"): ("v2_Annotations_Val_mscoco.zip", "v2_mscoco_val2014_annotations.json"),
}
OKVQA_FILES = {
    ("questions", "train"): ("OpenEnded_mscoco_train2014_questions.json.zip", "OpenEnded_mscoco_train2014_questions.json"),
    ("questions", "validation"): ("OpenEnded_mscoco_val2014_questions.json.zip", "OpenEnded_mscoco_val2014_questions.json"),
    ("annotations", "train"): ("mscoco_train2014_annotations.json.zip", "mscoco_train2014_annotations.json"),
    ("annotations", "validation"): ("mscoco_val2014_annotations.json.zip", "mscoco_val2014_annotations.json"),
}
GQA_QUESTIONS_ZIP = "questions1.2.zip"
GQA_IMAGES_ZIP = "images.zip"
COCO_ANNOTATIONS_ZIP = "annotations_trainval2014.zip"
COCO_IMAGE_ZIPS = {"train": "train2014.zip", "validation": "val2014.zip"}
VG_IMAGE_DATA_ZIP = "image_data.json.zip"  # Visual Genome's image metadata: the GQA -> COCO id map
VG_IMAGE_DATA_MEMBER = "image_data.json"
# Leakage control: a GQA image of our split whose photo is a COCO photo of the other split is skipped so.
OVERLAP_REASON = {"train": "eval_overlap", "validation": "train_overlap"}
OTHER_SPLIT = {"train": "validation", "validation": "train"}
# The first records of the real image_data.json, verbatim (reference/source-formats.md 4b.2; the
# hf-dummy copy has image_id 1-5); generated records follow them in ascending image_id order.
VG_REAL_RECORDS = [
    {"width": 800, "url": "https://cs.stanford.edu/people/rak248/VG_100K_2/1.jpg", "height": 600, "image_id": 1,
     "coco_id": None, "flickr_id": None},
    {"width": 800, "url": "https://cs.stanford.edu/people/rak248/VG_100K/2.jpg", "height": 600, "image_id": 2,
     "coco_id": None, "flickr_id": None},
    {"width": 640, "url": "https://cs.stanford.edu/people/rak248/VG_100K/3.jpg", "height": 480, "image_id": 3,
     "coco_id": None, "flickr_id": None},
]

# --------------------------------------------------------------------------------------------------------
# Real records and header values quoted in the reference.
# --------------------------------------------------------------------------------------------------------
VQA_INFO = {"description": "This is v2.0 of the VQA dataset.", "url": "http://visualqa.org", "version": "2.0",
            "year": 2017, "contributor": "VQA Team", "date_created": "2017-04-26 17:07:13"}
CC_BY_4 = {"url": "http://creativecommons.org/licenses/by/4.0/",
           "name": "Creative Commons Attribution 4.0 International License"}
COCO_INFO = {"description": "COCO 2014 Dataset", "url": "http://cocodataset.org", "version": "1.0", "year": 2014,
             "contributor": "COCO Consortium", "date_created": "2017/09/01"}
COCO_LICENSES = [
    {"url": "http://creativecommons.org/licenses/by-nc-sa/2.0/", "id": 1, "name": "Attribution-NonCommercial-ShareAlike License"},
    {"url": "http://creativecommons.org/licenses/by-nc/2.0/", "id": 2, "name": "Attribution-NonCommercial License"},
    {"url": "http://creativecommons.org/licenses/by-nc-nd/2.0/", "id": 3, "name": "Attribution-NonCommercial-NoDerivs License"},
    {"url": "http://creativecommons.org/licenses/by/2.0/", "id": 4, "name": "Attribution License"},
    {"url": "http://creativecommons.org/licenses/by-sa/2.0/", "id": 5, "name": "Attribution-ShareAlike License"},
    {"url": "http://creativecommons.org/licenses/by-nd/2.0/", "id": 6, "name": "Attribution-NoDerivs License"},
    {"url": "http://flickr.com/commons/usage/", "id": 7, "name": "No known copyright restrictions"},
    {"url": "http://www.usa.gov/copyright.shtml", "id": 8, "name": "United States Government Work"},
]
OKVQA_QUESTION_TYPES = {
    "one": "Vehicles and Transportation", "two": "Brands, Companies and Products",
    "three": "Objects, Material and Clothing", "four": "Sports and Recreation", "five": "Cooking and Food",
    "six": "Geography, History, Language and Culture", "seven": "People and Everyday life",
    "eight": "Plants and Animals", "nine": "Science and Technology", "ten": "Weather and Climate", "other": "Other",
}

# Real image ids per source and split, most valuable first: when a split holds fewer images than this
# list, the tail is dropped.
REAL_IMAGE_IDS: dict[str, dict[str, list]] = {
    "vqav2": {"train": [458752, 393714, 263006], "validation": []},
    "okvqa": {"train": [51606, 81721, 480208], "validation": []},
    "coco": {"train": [318556, 116100], "validation": [391895, 203564, 179765, 322141, 522418]},
    "gqa": {"train": ["2354786", "n161313"], "validation": ["2405722"]},
}
REAL_COCO_IDS = {i for src in COCO_FAMILY for ids in REAL_IMAGE_IDS[src].values() for i in ids}
REAL_GQA_IMAGE_IDS = {i for ids in REAL_IMAGE_IDS["gqa"].values() for i in ids}

# VQAv2: real question texts (k = question_id % 1000) and annotations.  393714000's question text is not
# quoted in the reference; the one here is invented to fit its question_type.
VQAV2_REAL_QUESTIONS = {
    458752000: "What is this photo taken looking through?",
    393714000: "What color are the curtains?",
    263006000: "How many people are pictured?",
    263006001: "What color is the water?",
}


def _vqa_answers(texts, confidences=None):
    confidences = confidences or ["yes"] * len(texts)
    return [{"answer": t, "answer_confidence": c, "answer_id": i + 1} for i, (t, c) in enumerate(zip(texts, confidences))]


VQAV2_REAL_ANNOTATIONS = {
    # verbatim from the reference: answers[0] "light blue" differs from multiple_choice_answer "white"
    393714000: {"question_type": "what color are the", "multiple_choice_answer": "white",
                "answers": _vqa_answers(["light blue"] + ["white"] * 9,
                                        ["yes"] * 5 + ["maybe"] + ["yes"] * 4),
                "image_id": 393714, "answer_type": "other", "question_id": 393714000},
    # partial in the reference (type, mca, answers[0]); answers 2..10 invented
    458752000: {"question_type": "what is this", "multiple_choice_answer": "net",
                "answers": _vqa_answers(["net", "net", "net", "netting", "net", "net", "mesh", "net", "net", "net"],
                                        ["maybe", "yes", "yes", "maybe", "yes", "yes", "no", "yes", "yes", "yes"]),
                "image_id": 458752, "answer_type": "other", "question_id": 458752000},
    263006000: {"question_type": "how many", "multiple_choice_answer": "2",
                "answers": _vqa_answers(["2", "2", "2", "3", "2", "2", "2", "2", "1", "2"]),
                "image_id": 263006, "answer_type": "number", "question_id": 263006000},
    263006001: {"question_type": "what color is the", "multiple_choice_answer": "blue",
                "answers": _vqa_answers(["blue", "green", "blue", "blue", "turquoise", "blue", "gray", "blue", "blue", "blue"],
                                        ["yes", "maybe", "yes", "yes", "maybe", "yes", "no", "yes", "yes", "yes"]),
                "image_id": 263006, "answer_type": "other", "question_id": 263006001},
}

OKVQA_REAL_QUESTIONS = {
    516065: (51606, "What is the hairstyle of the blond called?"),
    817215: (81721, "How old do you have to be in canada to do this?"),
    4802085: (480208, "Can you guess the place where the man is playing?"),
}
# (question_type, [(raw_answer, answer)] x 10, confidence).  The answers are invented: the reference's
# 516065 record is illustrative.  516065 carries the majority tie: "ponytail" 4x and "braid" 4x, "ponytail"
# first, so the expected answer is "ponytail" (alphabetical order would pick "braid").
OKVQA_REAL_ANNOTATIONS = {
    516065: ("four", [("pony tail", "ponytail"), ("braids", "braid"), ("ponytail", "ponytail"), ("braid", "braid"),
                      ("bun", "bun"), ("ponytail", "ponytail"), ("braid", "braid"), ("pony tail", "ponytail"),
                      ("braided", "braid"), ("pigtails", "pigtail")], 3),
    817215: ("seven", [("18", "18"), ("18", "18"), ("21", "21"), ("16", "16"), ("18", "18"), ("18", "18"),
                       ("16", "16"), ("18", "18"), ("19", "19"), ("18", "18")], 2),
    4802085: ("four", [("tennis court", "tennis court"), ("tennis court", "tennis court"), ("stadium", "stadium"),
                       ("tennis courts", "tennis court"), ("tennis court", "tennis court"), ("court", "court"),
                       ("tennis court", "tennis court"), ("wimbledon", "wimbledon"), ("tennis court", "tennis court"),
                       ("tennis court", "tennis court")], 4),
}

GQA_REAL_TRAIN = ("02930152", {
    "semantic": [{"operation": "select", "dependencies": [], "argument": "sky (2486325)"},
                 {"operation": "verify color", "dependencies": [0], "argument": "dark"}],
    "entailed": ["02930160", "02930158", "02930159", "02930154", "02930155", "02930156", "02930153"],
    "equivalent": ["02930152"],
    "question": "Is the sky dark?", "imageId": "2354786", "isBalanced": True,
    "groups": {"global": None, "local": "06-sky_dark"},
    "answer": "yes", "semanticStr": "select: sky (2486325)->verify color: dark [0]",
    "annotations": {"answer": {}, "question": {"2": "2486325"}, "fullAnswer": {"2": "2486325"}},
    "types": {"detailed": "verifyAttr", "semantic": "attr", "structural": "verify"},
    "fullAnswer": "Yes, the sky is dark."})
GQA_REAL_VAL = ("05515938", {
    "annotations": {"answer": {"0": "329774"}, "fullAnswer": {"3": "329774"}, "question": {"3": "329774"}},
    "answer": "parrot", "entailed": ["05515937", "05515936", "05515922", "05515921"], "equivalent": ["05515938"],
    "fullAnswer": "This is a parrot.", "groups": {"global": "bird", "local": "11q-bird"}, "imageId": "2405722",
    "isBalanced": True, "question": "What is this bird called?",
    "semantic": [{"argument": "bird (329774)", "dependencies": [], "operation": "select"},
                 {"argument": "name", "dependencies": [0], "operation": "query"}],
    "semanticStr": "select: bird (329774)->query: name [0]",
    "types": {"detailed": "categoryThis", "semantic": "cat", "structural": "query"}})
GQA_REAL_RECORDS = {"train": GQA_REAL_TRAIN, "validation": GQA_REAL_VAL}

COCO_REAL_IMAGES = {  # verbatim except width/height, which must describe the generated JPEG
    391895: {"license": 3, "file_name": "COCO_val2014_000000391895.jpg",
             "coco_url": "http://images.cocodataset.org/val2014/COCO_val2014_000000391895.jpg",
             "height": 360, "width": 640, "date_captured": "2013-11-14 11:18:45",
             "flickr_url": "http://farm9.staticflickr.com/8186/8119368305_4e622c8349_z.jpg", "id": 391895},
    522418: {"license": 4, "file_name": "COCO_val2014_000000522418.jpg",
             "coco_url": "http://images.cocodataset.org/val2014/COCO_val2014_000000522418.jpg",
             "height": 480, "width": 640, "date_captured": "2013-11-14 11:38:44",
             "flickr_url": "http://farm1.staticflickr.com/1/127244861_ab0c0381e7_z.jpg", "id": 522418},
}
# (caption id, image id, caption); only 37, 38, 49 and 48 are verbatim, 67/126/148 texts are invented.
COCO_REAL_CAPTIONS = {
    "train": [(48, 318556, "A very clean and well decorated empty bathroom"),
              (67, 116100, "A panoramic view of a kitchen and all of its appliances."),
              (126, 318556, "A blue and white bathroom with butterfly themed wall tiles."),
              (148, 116100, "A panoramic photo of a kitchen and dining room")],
    "validation": [(37, 203564, "A bicycle replica with a clock as the front wheel."),
                   (38, 179765, "A black Honda motorcycle parked in front of a garage."),
                   (49, 322141, "A room with blue walls and a white sink and door.")],
}

# --------------------------------------------------------------------------------------------------------
# Vocabulary for invented records.
# --------------------------------------------------------------------------------------------------------
COLORS = ["white", "black", "blue", "red", "green", "brown", "gray", "yellow", "orange", "pink", "silver", "tan"]
# (name, category) - some names have two words so GQA annotations get slice keys like "3:5"
GQA_OBJECTS = [("table", "furniture"), ("coffee table", "furniture"), ("chair", "furniture"), ("car", "vehicle"),
               ("bus", "vehicle"), ("traffic light", "object"), ("fire hydrant", "object"), ("dog", "animal"),
               ("cat", "animal"), ("horse", "animal"), ("parrot", "bird"), ("pigeon", "bird"), ("shirt", "clothing"),
               ("tennis racket", "sports equipment"), ("umbrella", "object"), ("building", "building"),
               ("tree", "plant"), ("sky", "place"), ("grass", "plant"), ("man", "person"), ("woman", "person"),
               ("pizza", "food"), ("cell phone", "device"), ("street sign", "object"), ("bench", "furniture")]
GQA_RELATIONS = ["on", "next to", "under", "behind", "in front of", "near", "on top of", "to the left of"]
VQA_OBJECTS = ["dog", "cat", "car", "bus", "train", "man", "woman", "table", "plate", "clock", "bench", "kite",
               "umbrella", "surfboard", "pizza", "bed", "sink", "horse", "sign", "building"]
VQA_PLURALS = ["dogs", "cats", "cars", "people", "zebras", "giraffes", "birds", "plates", "chairs", "trees"]
VQA_ADJ = ["open", "empty", "wet", "on", "old", "clean", "moving", "full", "sunny", "broken"]
VQA_OTHER_ANSWERS = {
    "what is the": ["frisbee", "umbrella", "phone", "bat", "kite", "remote", "racket", "bag"],
    "where is the": ["table", "street", "beach", "kitchen", "field", "sky", "water", "grass"],
    "what sport is": ["tennis", "baseball", "soccer", "surfing", "skiing", "frisbee", "skateboarding"],
    "what room is": ["kitchen", "bathroom", "living room", "bedroom", "office", "dining room"],
}
OKVQA_TEMPLATES = [  # (question_type code, question, [(raw_answer, answer)])
    ("one", "What type of vehicle is this?", [("train", "train"), ("buses", "bus"), ("truck", "truck"), ("trolley", "trolley")]),
    ("two", "What brand is this device?", [("apple", "apple"), ("samsung", "samsung"), ("sony", "sony"), ("dell", "dell")]),
    ("three", "What material is the table made of?", [("wood", "wood"), ("wooden", "wood"), ("metal", "metal"), ("glass", "glass")]),
    ("four", "What sport can you use this for?", [("surfing", "surf"), ("tennis", "tennis"), ("skiing", "ski"), ("baseball", "baseball")]),
    ("five", "What ingredient is on top of this food?", [("cheese", "cheese"), ("tomatoes", "tomato"), ("pepperoni", "pepperoni"), ("onions", "onion")]),
    ("six", "In which country is this picture likely taken?", [("england", "england"), ("usa", "usa"), ("japan", "japan"), ("france", "france")]),
    ("seven", "What is the man about to do?", [("eat", "eat"), ("eating", "eat"), ("sleep", "sleep"), ("leave", "leave")]),
    ("eight", "What animal is shown here?", [("giraffes", "giraffe"), ("zebra", "zebra"), ("elephants", "elephant"), ("horse", "horse")]),
    ("nine", "What is this device used for?", [("communication", "communication"), ("calling", "call"), ("typing", "type"), ("texting", "text")]),
    ("ten", "What season is it?", [("winter", "winter"), ("summer", "summer"), ("fall", "fall"), ("spring", "spring")]),
    ("other", "Why is the person wearing a helmet?", [("safety", "safety"), ("protection", "protection"), ("rules", "rule"), ("safe", "safe")]),
]
CAPTION_SUBJECTS = ["A man", "A woman", "Two people", "A small dog", "A cat", "A group of kids", "A red bus",
                    "A train", "A plate of food", "A giraffe", "A surfer", "A kitchen", "A bathroom", "A clock tower"]
CAPTION_VERBS = ["standing next to", "sitting on", "riding", "parked in front of", "looking at", "near", "on top of",
                 "in the middle of", "walking across", "holding"]
CAPTION_OBJECTS = ["a wooden bench", "a busy street", "a white wall", "the beach", "a large field", "a kitchen counter",
                   "a tall building", "a grassy hill", "a parking lot", "the ocean", "a table", "a snowy slope"]


# --------------------------------------------------------------------------------------------------------
# Planning: which images and questions exist, which are broken, which image carries which mode.
# --------------------------------------------------------------------------------------------------------
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

    def member(self, image_id) -> str:
        if self.prefix == "images/":
            return f"images/{image_id}.jpg"
        sub = self.prefix.rstrip("/")
        return f"{sub}/COCO_{sub}_{int(image_id):012d}.jpg"


def _coco_split_of(image_id: int) -> str:
    # COCO ids are unique across 2014 splits; a fixed hash partition keeps invented train and val ids
    # disjoint without one split's count influencing the other's ids.
    return "validation" if (image_id * 2654435761) % 1000 < 330 else "train"


def _coco_id_pool(seed: int, split: str) -> Iterator[int]:
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


def _gqa_id_pool(seed: int, split: str, n_prefixed_only: bool = False) -> Iterator[str]:
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


def _plan_vqa_questions(plan: SplitPlan, per_image: int, broken: bool) -> None:
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


def _plan_quirk_targets(plan: SplitPlan) -> None:
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
    elif plan.source == "okvqa":
        invented = [q for q in annotated if q not in OKVQA_REAL_QUESTIONS]
        tie = _pick([q for q in (516065,) if q in present], invented)
        unknown_type = _pick([], invented[1:] + invented, {tie})
        plan.quirks["majority_tie_first_wins"] = [tie] if tie is not None else []
        plan.quirks["question_type_not_in_map"] = [unknown_type] if unknown_type is not None else []


def _plan_coco_family(counts: dict, sources: tuple, broken: bool, seed: int):
    plans, zips = {}, {}
    for split in SPLITS:
        sub = COCO_SUB[split]
        zip_plan = ImageZipPlan(COCO_IMAGE_ZIPS[split], f"{sub}/")
        stream = _coco_id_pool(seed, split)
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


def _plan_gqa(counts: dict, broken: bool, seed: int):
    plans = {}
    zip_plan = ImageZipPlan(GQA_IMAGES_ZIP, "images/")
    for split in SPLITS:
        stream = _gqa_id_pool(seed, split)
        specials = [next(stream), next(stream)]
        real = list(REAL_IMAGE_IDS["gqa"][split])
        if split == "validation":  # make sure validation has an `n`-prefixed imageId early on
            real.append(next(_gqa_id_pool(seed, split, n_prefixed_only=True)))
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


# --------------------------------------------------------------------------------------------------------
# Zip and JSON writing.
# --------------------------------------------------------------------------------------------------------
def _zip_info(name: str, compress: int) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, date_time=ZIP_DATE_TIME)
    info.compress_type = compress
    info.create_system = 3  # Unix, regardless of the host, for identical bytes everywhere
    info.external_attr = (0o40755 << 16) | 0x10 if name.endswith("/") else 0o100644 << 16
    return info


class Stream:
    """A JSON value written item by item: kind "list" (items are values) or "dict" (items are (key, value))."""

    def __init__(self, kind: str, items: Iterable, sort_keys: bool = False):
        self.kind, self.items, self.sort_keys = kind, items, sort_keys


def write_json_member(zf: zipfile.ZipFile, name: str, pairs: list[tuple[str, Any]], large: bool = False) -> int:
    """Write a top-level JSON object whose values may be Streams, without building the whole text.

    Returns the number of bytes written.  Separators are json's defaults (", " and ": "); the buffer is
    flushed about every MiB to keep the per-write overhead low."""
    written = 0
    with zf.open(_zip_info(name, zipfile.ZIP_DEFLATED), "w", force_zip64=large) as fh:
        buf: list[str] = []
        size = 0

        def emit(text: str) -> None:
            nonlocal size, written
            buf.append(text)
            size += len(text)
            if size > 1 << 20:
                data = "".join(buf).encode("utf-8")
                fh.write(data)
                written += len(data)
                buf.clear()
                size = 0

        emit("{")
        for index, (key, value) in enumerate(pairs):
            emit((", " if index else "") + json.dumps(key) + ": ")
            if isinstance(value, Stream):
                dumps = json.JSONEncoder(sort_keys=value.sort_keys).encode
                emit("[" if value.kind == "list" else "{")
                for item_index, item in enumerate(value.items):
                    sep = ", " if item_index else ""
                    if value.kind == "list":
                        emit(sep + dumps(item))
                    else:
                        emit(sep + json.dumps(item[0]) + ": " + dumps(item[1]))
                emit("]" if value.kind == "list" else "}")
            else:
                emit(json.dumps(value))
        emit("}")
        data = "".join(buf).encode("utf-8")
        fh.write(data)
        written += len(data)
    return written


class _AtomicZip:
    """A ZipFile written to NAME.partial and renamed on success, so an interrupted run never leaves a
    half-written archive under an official name."""

    def __init__(self, path: Path):
        self.path, self.tmp = path, path.with_name(path.name + ".partial")

    def __enter__(self) -> zipfile.ZipFile:
        self.zf = zipfile.ZipFile(self.tmp, "w")
        return self.zf

    def __exit__(self, exc_type, exc, tb) -> None:
        self.zf.close()
        if exc_type is None:
            os.replace(self.tmp, self.path)
        else:
            self.tmp.unlink(missing_ok=True)


# --------------------------------------------------------------------------------------------------------
# VQAv2 records.
# --------------------------------------------------------------------------------------------------------
def _ten_answers(rng: random.Random, mca: str, choices: list[str]) -> list[str]:
    """Ten answers in which `mca` is the strict majority (6..10 votes)."""
    votes = rng.randint(6, 10)
    others = [c for c in choices if c != mca] or [mca]
    texts = [mca] * votes + [rng.choice(others) for _ in range(10 - votes)]
    rng.shuffle(texts)
    return texts


def _vqav2_invented(rng: random.Random, image_id: int, qid: int) -> tuple[dict, dict]:
    kind = rng.randrange(8)
    if kind == 0:
        qtype, atype = "is the", "yes/no"
        question = f"Is the {rng.choice(VQA_OBJECTS)} {rng.choice(VQA_ADJ)}?"
        choices = ["yes", "no"]
    elif kind == 1:
        qtype, atype = "how many", "number"
        question = f"How many {rng.choice(VQA_PLURALS)} are in the picture?"
        choices = [str(n) for n in range(0, 9)]
    elif kind == 2:
        qtype, atype = "what color is the", "other"
        question = f"What color is the {rng.choice(VQA_OBJECTS)}?"
        choices = COLORS
    elif kind == 3:
        qtype, atype = "are there", "yes/no"
        question = f"Are there any {rng.choice(VQA_PLURALS)} in this photo?"
        choices = ["yes", "no"]
    else:
        qtype = ["what is the", "where is the", "what sport is", "what room is"][kind - 4]
        atype = "other"
        if qtype == "what is the":
            question = f"What is the {rng.choice(['man', 'woman', 'boy', 'girl'])} holding?"
        elif qtype == "where is the":
            question = f"Where is the {rng.choice(VQA_OBJECTS)}?"
        else:
            question = "What sport is being played?" if qtype == "what sport is" else "What room is this?"
        choices = VQA_OTHER_ANSWERS[qtype]
    mca = rng.choice(choices)
    texts = _ten_answers(rng, mca, choices)
    confidences = rng.choices(["yes", "maybe", "no"], weights=[16, 3, 1], k=10)
    annotation = {"question_type": qtype, "multiple_choice_answer": mca, "answers": _vqa_answers(texts, confidences),
                  "image_id": image_id, "answer_type": atype, "question_id": qid}
    return {"image_id": image_id, "question": question, "question_id": qid}, annotation


def _vqav2_record(seed: int, image_id: int, qid: int, quirks: dict) -> tuple[dict, dict]:
    """(question, annotation) of one VQAv2 question id; a pure function of (seed, qid)."""
    rng = random.Random(seed * 1_000_003 + qid)
    if qid in VQAV2_REAL_ANNOTATIONS:
        annotation = json.loads(json.dumps(VQAV2_REAL_ANNOTATIONS[qid]))
        question = {"image_id": image_id, "question": VQAV2_REAL_QUESTIONS[qid], "question_id": qid}
    else:
        question, annotation = _vqav2_invented(rng, image_id, qid)
    answers = annotation["answers"]
    if qid in quirks.get("answers0_differs_from_mca", ()) and answers[0]["answer"] == annotation["multiple_choice_answer"]:
        # swap texts so the first listed answer is a minority answer (the real 393714000 already is)
        for other in answers[1:]:
            if other["answer"] != annotation["multiple_choice_answer"]:
                answers[0]["answer"], other["answer"] = other["answer"], answers[0]["answer"]
                break
        else:  # all ten agreed: make the first one a dissenting vote
            answers[0]["answer"] = "no" if annotation["multiple_choice_answer"] == "yes" else "yes"
    if qid in quirks.get("answer_ids_listed_shuffled", ()):
        order = list(range(10))
        while order == sorted(order):
            rng.shuffle(order)
        annotation["answers"] = [answers[i] for i in order]
    return question, annotation


def _vqav2_file_order(plan: SplitPlan, seed: int, what: str) -> list[tuple[int, int]]:
    """(image_id, qid) pairs in file order: shuffled, so neither file is in question_id order (the real
    train file starts with 458752000, which is kept first)."""
    pairs = [(i, q) for i in plan.image_ids for q in plan.questions[i]]
    if what == "questions":
        pairs += [(i, q) for q, i in plan.orphans.items()]
    rng = random.Random(f"vqav2-order:{seed}:{plan.split}:{what}")
    rng.shuffle(pairs)
    first = [p for p in pairs if p[1] == 458752000]
    return first + [p for p in pairs if p[1] != 458752000]


def write_vqav2(out: Path, plans: dict, seed: int) -> list[str]:
    written = []
    for split in SPLITS:
        plan = plans[("vqav2", split)]
        header_info = dict(VQA_INFO)
        large = sum(len(q) for q in plan.questions.values()) * 700 > ZIP64_THRESHOLD

        zip_name, member = VQAV2_FILES[("questions", split)]
        questions = (_vqav2_record(seed, i, q, plan.quirks)[0] for i, q in _vqav2_file_order(plan, seed, "questions"))
        with _AtomicZip(out / zip_name) as zf:
            write_json_member(zf, member, [
                ("info", header_info), ("task_type", "Open-Ended"), ("data_type", "mscoco"), ("license", CC_BY_4),
                ("data_subtype", plan.original_split), ("questions", Stream("list", questions))], large)
        written.append(zip_name)

        zip_name, member = VQAV2_FILES[("annotations", split)]
        annotations = (_vqav2_record(seed, i, q, plan.quirks)[1] for i, q in _vqav2_file_order(plan, seed, "annotations"))
        with _AtomicZip(out / zip_name) as zf:
            # data_type after the list on purpose: a streaming reader must not assume headers come first
            write_json_member(zf, member, [
                ("info", header_info), ("license", CC_BY_4), ("data_subtype", plan.original_split),
                ("annotations", Stream("list", annotations)), ("data_type", "mscoco")], large)
        written.append(zip_name)
    return written


# --------------------------------------------------------------------------------------------------------
# OK-VQA records.
# --------------------------------------------------------------------------------------------------------
def _okvqa_record(seed: int, image_id: int, qid: int, quirks: dict) -> tuple[dict, dict]:
    rng = random.Random(seed * 1_000_033 + qid)
    if qid in OKVQA_REAL_QUESTIONS:
        question_text = OKVQA_REAL_QUESTIONS[qid][1]
        qtype, pairs, confidence = OKVQA_REAL_ANNOTATIONS[qid]
    else:
        qtype, question_text, choices = rng.choice(OKVQA_TEMPLATES)
        top = rng.choice(choices)
        votes = rng.randint(6, 10)
        pairs = [top] * votes + [rng.choice([c for c in choices if c[1] != top[1]]) for _ in range(10 - votes)]
        rng.shuffle(pairs)
        confidence = rng.randint(1, 5)
        if qid in quirks.get("majority_tie_first_wins", ()):
            a, b = rng.sample([c for c in choices], 2)
            while a[1] == b[1]:
                a, b = rng.sample([c for c in choices], 2)
            # the answer listed first sorts last, so neither alphabetical order nor the last occurrence
            # gives the right majority answer
            a, b = sorted([a, b], key=lambda pair: pair[1], reverse=True)
            pairs = [a, b, a, b, ("dunno", "dunno"), a, b, a, b, ("maybe", "maybe")]
        if qid in quirks.get("question_type_not_in_map", ()):
            qtype = "eleven"
    answers = [{"answer_id": n + 1, "raw_answer": raw, "answer_confidence": rng.choice(["yes", "yes", "yes", "no"]),
                "answer": ans} for n, (raw, ans) in enumerate(pairs)]
    annotation = {"image_id": image_id, "answer_type": "other", "question_type": qtype, "question_id": qid,
                  "confidence": confidence, "answers": answers}
    return {"image_id": image_id, "question": question_text, "question_id": qid}, annotation


def write_okvqa(out: Path, plans: dict, seed: int) -> list[str]:
    written = []
    for split in SPLITS:
        plan = plans[("okvqa", split)]
        order = [(i, q) for i in plan.image_ids for q in plan.questions[i]]
        rng = random.Random(f"okvqa-order:{seed}:{split}")
        rng.shuffle(order)
        real_first = [p for p in order if p[1] in OKVQA_REAL_QUESTIONS]
        real_first.sort(key=lambda p: list(OKVQA_REAL_QUESTIONS).index(p[1]))  # the reference's file order
        order = real_first + [p for p in order if p[1] not in OKVQA_REAL_QUESTIONS]
        question_order = order + [(i, q) for q, i in plan.orphans.items()]
        large = len(order) * 700 > ZIP64_THRESHOLD

        zip_name, member = OKVQA_FILES[("questions", split)]
        questions = (_okvqa_record(seed, i, q, plan.quirks)[0] for i, q in question_order)
        with _AtomicZip(out / zip_name) as zf:
            write_json_member(zf, member, [("license", CC_BY_4), ("data_subtype", plan.original_split),
                                           ("task_type", "Open-Ended"), ("questions", Stream("list", questions))], large)
        written.append(zip_name)

        zip_name, member = OKVQA_FILES[("annotations", split)]
        annotations = Stream("list", (_okvqa_record(seed, i, q, plan.quirks)[1] for i, q in order))
        # question_types after the annotation list in train and before it in val: key order is irrelevant
        # to JSON, and a streaming reader must find the map wherever it is.
        if split == "train":
            pairs = [("license", CC_BY_4), ("data_subtype", plan.original_split), ("annotations", annotations),
                     ("question_types", OKVQA_QUESTION_TYPES)]
        else:
            pairs = [("license", CC_BY_4), ("data_subtype", plan.original_split),
                     ("question_types", OKVQA_QUESTION_TYPES), ("annotations", annotations)]
        with _AtomicZip(out / zip_name) as zf:
            write_json_member(zf, member, pairs, large)
        written.append(zip_name)
    return written


# --------------------------------------------------------------------------------------------------------
# GQA records.
# --------------------------------------------------------------------------------------------------------
def _span(words_before: str, name: str) -> str:
    """Annotation key of `name` following `words_before` ("3" for one word, "3:5" for two)."""
    start = len(words_before.split())
    width = len(name.split())
    return str(start) if width == 1 else f"{start}:{start + width}"


def _program(steps: list[tuple[str, str, list[int]]]) -> tuple[list[dict], str]:
    """GQA semantic program and its semanticStr ("select: sky (2486325)->verify color: dark [0]")."""
    semantic = [{"operation": op, "dependencies": deps, "argument": arg} for op, arg, deps in steps]
    text = "->".join(f"{op}: {arg}" + (f" [{', '.join(map(str, deps))}]" if deps else "") for op, arg, deps in steps)
    return semantic, text


def _gqa_question(rng: random.Random, objects: list[tuple[str, str, str, str]], template: int) -> dict:
    """One invented GQA question about an image's objects (name, category, object id, color)."""
    (o1, cat1, id1, c1), (o2, cat2, id2, c2) = rng.sample(objects, 2)
    other_color = rng.choice([c for c in COLORS if c != c1])
    yes = rng.random() < 0.5
    # Half of the attribute questions refer to their object through a relation ("the cup on the table"),
    # which lengthens the program as in real GQA (records of about 1 kB).
    rel = rng.choice(GQA_RELATIONS)
    use_rel = rng.random() < 0.7
    phrase = f"{o1} {rel} the {o2}" if use_rel else o1
    ref_steps = ([("select", f"{o2} ({id2})", []), ("relate", f"{o1},{rel},s ({id1})", [0])] if use_rel
                 else [("select", f"{o1} ({id1})", [])])
    last = len(ref_steps) - 1

    def ref_spans(prefix: str) -> dict:
        spans = {_span(prefix, o1): id1}
        if use_rel:
            spans[_span(f"{prefix} {o1} {rel} the", o2)] = id2
        return spans

    if template == 0:  # verifyAttr
        attr = c1 if yes else other_color
        question = f"Is the {phrase} {attr}?"
        full = f"Yes, the {phrase} is {c1}." if yes else f"No, the {phrase} is {c1}."
        steps = ref_steps + [("verify color", attr, [last])]
        annotations = {"answer": {}, "question": ref_spans("Is the"), "fullAnswer": ref_spans(f"{full.split()[0]} the")}
        types, groups = ("verifyAttr" if not use_rel else "verifyAttrC", "attr", "verify"), (None, f"06-{o1}_{attr}")
        answer = "yes" if yes else "no"
    elif template == 1:  # categoryThis
        question = f"What is this {cat1} called?"
        answer, full = o1, f"This is a {o1}."
        steps = [("select", f"{cat1} ({id1})", []), ("query", "name", [0])]
        annotations = {"answer": {_span("", o1): id1}, "question": {_span("What is this", cat1): id1},
                       "fullAnswer": {_span("This is a", o1): id1}}
        types, groups = ("categoryThis", "cat", "query"), (cat1, f"11q-{cat1}")
    elif template == 2:  # relS
        question = f"What is {rel} the {o2}?"
        answer, full = o1, f"The {o1} is {rel} the {o2}."
        steps = [("select", f"{o2} ({id2})", []), ("relate", f"_,{rel},s ({id1})", [0]), ("query", "name", [1])]
        annotations = {"answer": {_span("", o1): id1}, "question": {_span(f"What is {rel} the", o2): id2},
                       "fullAnswer": {_span("The", o1): id1, _span(f"The {o1} is {rel} the", o2): id2}}
        types, groups = ("relS", "rel", "query"), (cat1, f"14-{o2}_{rel},s")
    elif template == 3:  # queryAttr
        question = f"What color is the {phrase}?"
        answer, full = c1, f"The {phrase} is {c1}."
        steps = ref_steps + [("query", "color", [last])]
        annotations = {"answer": {}, "question": ref_spans("What color is the"), "fullAnswer": ref_spans("The")}
        types, groups = ("queryAttr", "attr", "query"), ("color", f"10q-{o1}_color")
    elif template == 4:  # exist
        question = f"Is there a {o1} in this picture?"
        answer = "yes" if yes else "no"
        full = f"Yes, there is a {o1}." if yes else f"No, there is no {o1}."
        steps = [("select", f"{o1} ({id1 if yes else '-'})", []), ("exist", "?", [0])]
        annotations = {"answer": {}, "question": {_span("Is there a", o1): id1} if yes else {},
                       "fullAnswer": {_span("Yes, there is a", o1): id1} if yes else {}}
        types, groups = ("existThis", "obj", "verify"), (None, f"03-{o1}_{'true' if yes else 'false'}")
    elif template == 5:  # logical and
        both = c1 == c2 or yes
        attr = c1
        question = f"Are both the {o1} and the {o2} {attr}?"
        answer = "yes" if both else "no"
        full = f"Yes, both the {o1} and the {o2} are {attr}." if both else f"No, the {o2} is {c2}."
        steps = [("select", f"{o1} ({id1})", []), ("verify color", attr, [0]), ("select", f"{o2} ({id2})", []),
                 ("verify color", attr, [2]), ("and", "", [1, 3])]
        annotations = {"answer": {}, "question": {_span("Are both the", o1): id1, _span(f"Are both the {o1} and the", o2): id2},
                       "fullAnswer": {_span(f"No, the" if not both else f"Yes, both the {o1} and the", o2): id2}}
        types, groups = ("verifyAttrsAnd", "attr", "logical"), (None, f"09and-{o1}_{o2}_{attr}")
    elif template == 6:  # chooseAttr
        options = [c1, other_color] if yes else [other_color, c1]
        question = f"Is the {phrase} {options[0]} or {options[1]}?"
        answer, full = c1, f"The {phrase} is {c1}."
        steps = ref_steps + [("choose color", "|".join(options), [last])]
        annotations = {"answer": {}, "question": ref_spans("Is the"), "fullAnswer": ref_spans("The")}
        types, groups = ("chooseAttr", "attr", "choose"), ("color", f"10c-{o1}_color")
    else:  # compare
        same = c1 == c2
        question = f"Do the {o1} and the {o2} have the same color?"
        answer = "yes" if same else "no"
        full = (f"Yes, both the {o1} and the {o2} are {c1}." if same
                else f"No, the {o1} is {c1} and the {o2} is {c2}.")
        steps = [("select", f"{o1} ({id1})", []), ("select", f"{o2} ({id2})", []), ("same color", "", [0, 1])]
        annotations = {"answer": {}, "question": {_span("Do the", o1): id1, _span(f"Do the {o1} and the", o2): id2},
                       "fullAnswer": {_span("No, the" if not same else "Yes, both the", o1): id1}}
        types, groups = ("sameColor", "attr", "compare"), (None, f"12-{o1}_{o2}_color")
    semantic, semantic_str = _program(steps)
    return {"semantic": semantic, "question": question, "groups": {"global": groups[0], "local": groups[1]},
            "answer": answer, "semanticStr": semantic_str, "annotations": annotations,
            "types": {"detailed": types[0], "semantic": types[1], "structural": types[2]}, "fullAnswer": full}


def _gqa_image_records(seed: int, image_id: str, qids: list[str], balanced: bool = True) -> Iterator[tuple[str, dict]]:
    """All (question id, record) pairs of one image, in the key order of the real train record."""
    rng = random.Random(f"gqa-image:{seed}:{image_id}:{balanced}")
    objects = [(name, cat, str(rng.randrange(100000, 4000000)), rng.choice(COLORS))
               for name, cat in rng.sample(GQA_OBJECTS, 6)]
    for k, qid in enumerate(qids):
        body = _gqa_question(rng, objects, (k + rng.randrange(8)) % 8)
        others = [q for q in qids if q != qid]
        entailed = rng.sample(others, min(len(others), rng.randint(4, 14)))
        equivalent = [qid] + (rng.sample(others, 1) if others and rng.random() < 0.2 else [])
        yield qid, {"semantic": body["semantic"], "entailed": entailed, "equivalent": equivalent,
                    "question": body["question"], "imageId": image_id, "isBalanced": balanced,
                    "groups": body["groups"], "answer": body["answer"], "semanticStr": body["semanticStr"],
                    "annotations": body["annotations"], "types": body["types"], "fullAnswer": body["fullAnswer"]}


@dataclass
class GqaIds:
    """Question ids per GQA image: 8-digit zero-padded strings in consecutive blocks per image."""
    per_image: dict = field(default_factory=dict)   # image_id -> [qid str ...]


def _allocate_gqa_ids(plans: dict, per_image: int, seed: int) -> dict[str, GqaIds]:
    rng = random.Random(f"gqa-qids:{seed}")
    reserved = []  # blocks of the real records and the ids they cite
    for split in SPLITS:
        qid, record = GQA_REAL_RECORDS[split]
        cited = [int(qid)] + [int(x) for x in record["entailed"]]
        reserved.append((min(cited), max(cited) + per_image + 1))
    result, counter = {}, 100000
    for split in SPLITS:
        ids = GqaIds()
        if split == "validation":
            counter = max(counter, 5600000)
        real_qid, real_record = GQA_REAL_RECORDS[split]
        for image_id in plans[("gqa", split)].image_ids:
            if image_id == real_record["imageId"]:
                start = int(real_qid)
            else:
                while any(lo <= counter + per_image and counter <= hi for lo, hi in reserved):
                    counter += 10000
                start = counter
                counter += per_image + rng.randint(1, 4)
            ids.per_image[image_id] = [f"{start + k:08d}" for k in range(per_image)]
        result[split] = ids
    return result


def _gqa_split_records(seed: int, plan: SplitPlan, ids: GqaIds) -> Iterator[tuple[str, dict]]:
    real_qid, real_record = GQA_REAL_RECORDS[plan.split]
    for image_id in plan.image_ids:
        qids = ids.per_image[image_id]
        for qid, record in _gqa_image_records(seed, image_id, qids):
            yield (qid, real_record) if qid == real_qid else (qid, record)


def _gqa_decoys(seed: int, plans: dict, ids: dict) -> tuple[dict[str, list[tuple[str, dict]]], list[str]]:
    """Small decoy files the builder must ignore (other splits, unbalanced questions, test records)."""
    rng = random.Random(f"gqa-decoys:{seed}")
    test_pool = _gqa_id_pool(seed, "test")
    decoy_images = {name: [next(test_pool) for _ in range(2)] for name in ("testdev", "test", "challenge")}
    decoys: dict[str, list] = {}

    def unbalanced(split: str, base: int, count: int) -> list:
        records = []
        for n, image_id in enumerate(plans[("gqa", split)].image_ids[:count]):
            qids = [f"{base + n * 10 + k:08d}" for k in range(2)]
            records += list(_gqa_image_records(seed, image_id, qids, balanced=False))
        return records

    train_balanced = list(itertools.islice(_gqa_split_records(seed, plans[("gqa", "train")], ids["train"]), 3))
    decoys["train_all_questions/train_all_questions_0.json"] = train_balanced[:2] + unbalanced("train", 60000000, 3)
    decoys["train_all_questions/train_all_questions_1.json"] = train_balanced[2:] + unbalanced("train", 61000000, 2)
    val_balanced = list(itertools.islice(_gqa_split_records(seed, plans[("gqa", "validation")], ids["validation"]), 2))
    decoys["val_all_questions.json"] = val_balanced + unbalanced("validation", 62000000, 3)
    testdev = []
    for n, image_id in enumerate(decoy_images["testdev"]):
        testdev += list(_gqa_image_records(seed, image_id, [f"{20100000 + n * 10 + k}" for k in range(2)]))
    decoys["testdev_balanced_questions.json"] = testdev
    for name, base in (("test", 30100000), ("challenge", 40100000)):
        records = []
        for n, image_id in enumerate(decoy_images[name]):
            for qid, record in _gqa_image_records(seed, image_id, [f"{base + n * 10 + k}" for k in range(2)]):
                # test/challenge records carry only these three fields
                records.append((qid, {"imageId": record["imageId"], "question": record["question"], "isBalanced": True}))
        decoys[f"{name}_balanced_questions.json"] = records
    rng.shuffle(decoys["val_all_questions.json"])
    return decoys, [i for group in decoy_images.values() for i in group]


def write_gqa_questions(out: Path, plans: dict, ids: dict, seed: int) -> list:
    """Write questions1.2.zip; returns the imageIds the decoy files reference (they go into images.zip)."""
    decoys, decoy_image_ids = _gqa_decoys(seed, plans, ids)
    members = [
        ("train_all_questions/train_all_questions_0.json", None),
        ("train_all_questions/train_all_questions_1.json", None),
        ("train_balanced_questions.json", "train"),
        ("val_all_questions.json", None),
        ("val_balanced_questions.json", "validation"),
        ("testdev_balanced_questions.json", None),
        ("test_balanced_questions.json", None),
        ("challenge_balanced_questions.json", None),
    ]
    with _AtomicZip(out / GQA_QUESTIONS_ZIP) as zf:
        for member, split in members:
            if split is None:
                records, sort_keys, large = decoys[member], False, False
            else:
                plan = plans[("gqa", split)]
                records = _gqa_split_records(seed, plan, ids[split])
                # val is written with sorted keys (as the reference's val record is), train in the train
                # record's order: a reader must not depend on key order inside records
                sort_keys = split == "validation"
                large = sum(len(q) for q in ids[split].per_image.values()) * 1100 > ZIP64_THRESHOLD
            write_gqa_dict_member(zf, member, records, sort_keys, large)
    return decoy_image_ids


def write_gqa_dict_member(zf: zipfile.ZipFile, name: str, records: Iterable, sort_keys: bool, large: bool) -> None:
    """A GQA question file is a bare top-level dict {question id: record}; stream it."""
    with zf.open(_zip_info(name, zipfile.ZIP_DEFLATED), "w", force_zip64=large) as fh:
        dumps = json.JSONEncoder(sort_keys=sort_keys).encode
        buf, size = ["{"], 1
        for index, (qid, record) in enumerate(records):
            text = (", " if index else "") + '"' + qid + '": ' + dumps(record)
            buf.append(text)
            size += len(text)
            if size > 1 << 20:
                fh.write("".join(buf).encode("utf-8"))
                buf, size = [], 0
        buf.append("}")
        fh.write("".join(buf).encode("utf-8"))


# --------------------------------------------------------------------------------------------------------
# COCO captions.
# --------------------------------------------------------------------------------------------------------
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


def _coco_listed_ids(plans: dict, seed: int) -> dict[str, list[int]]:
    """The image ids of captions_{train,val}2014.json: the coco source's images, or (a mirror without the coco
    source, which GQA's leakage control still needs the two image lists of) a few invented COCO ids."""
    if ("coco", "train") in plans:
        return {split: list(plans[("coco", split)].image_ids) for split in SPLITS}
    listed = {}
    for split in SPLITS:
        stream = _coco_id_pool(seed, split)
        next(stream), next(stream)  # the broken specials of the coco family
        listed[split] = list(itertools.islice(stream, 4))
    return listed


def write_coco_annotations(out: Path, plans: dict, seed: int, image_size: tuple[int, int]) -> list[str]:
    with _AtomicZip(out / COCO_ANNOTATIONS_ZIP) as zf:
        for kind in ("instances", "person_keypoints"):
            for split in SPLITS:
                write_json_member(zf, f"annotations/{kind}_{COCO_SUB[split]}.json", list(_coco_stub(kind).items()))
        listed = _coco_listed_ids(plans, seed)
        for split in SPLITS:
            plan = plans.get(("coco", split)) or SplitPlan("coco", split, COCO_SUB[split], listed[split])
            sub = COCO_SUB[split]
            rng = random.Random(f"coco-images:{seed}:{split}")
            # image list order: the reference's first val images first, the rest shuffled
            order = list(plan.image_ids)
            rng.shuffle(order)
            order = [i for i in (391895, 522418) if i in order] + [i for i in order if i not in (391895, 522418)]
            images = [_coco_image_entry(rng, i, sub, image_size) for i in order]
            captions = [{"image_id": image_id, "id": cid, "caption": text}
                        for cid, image_id, text in _coco_captions(plan, seed)] if ("coco", split) in plans else []
            write_json_member(zf, f"annotations/captions_{sub}.json", [
                ("info", COCO_INFO), ("images", Stream("list", images)), ("licenses", COCO_LICENSES),
                ("annotations", Stream("list", captions))])
    return [COCO_ANNOTATIONS_ZIP]


def _plan_visual_genome(plans: dict, seed: int) -> None:
    """Give every numeric GQA imageId a Visual Genome coco_id (on its plan), in a fixed pattern over the
    invented, healthy images of each split: 1st, 4th, ... -> a COCO photo of the *other* split (the overlap a
    decontaminated build skips), 2nd, 5th, ... -> null, 3rd, 6th, ... -> a COCO photo of the same split (kept).
    Real and broken imageIds map to null; `n...` imageIds are not Visual Genome images and get no record."""
    listed = _coco_listed_ids(plans, seed)
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


def write_visual_genome(out: Path, plans: dict, seed: int) -> list[str]:
    """image_data.json.zip: one JSON list of {width, url, height, image_id, coco_id, flickr_id} in ascending
    image_id order, as the real file; every other generated record says `id` instead of `image_id`, as some
    readers write it."""
    _plan_visual_genome(plans, seed)
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
    with _AtomicZip(out / VG_IMAGE_DATA_ZIP) as zf:
        with zf.open(_zip_info(VG_IMAGE_DATA_MEMBER, zipfile.ZIP_DEFLATED), "w") as fh:
            fh.write(json.dumps(records).encode())
    return [VG_IMAGE_DATA_ZIP]


# --------------------------------------------------------------------------------------------------------
# Images.
# --------------------------------------------------------------------------------------------------------
class TextureFactory:
    """Cheap, textured, deterministic pictures: one noise+gradient base per (size, seed), rolled and
    stamped per image so every file's bytes differ.  The texture makes 640x480 JPEGs about 100 kB at
    quality 90, close to real photos, which matters for benchmarks."""

    def __init__(self, size: tuple[int, int], seed: int):
        width, height = size
        rng = np.random.default_rng(seed)
        block = 8
        coarse = rng.integers(0, 256, (height // block + 2, width // block + 2, 3)).astype(np.float32)
        smooth = np.repeat(np.repeat(coarse, block, 0), block, 1)[:height, :width]
        smooth = _box_blur(_box_blur(smooth, block, 0), block, 1)
        yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
        gradient = np.stack([xx * 255 / max(width, 1), yy * 255 / max(height, 1),
                             (xx + yy) * 127 / max(width + height, 1)], -1)
        noise = rng.normal(0, 6, (height, width, 3))
        self.base = np.clip(0.5 * smooth + 0.5 * gradient + noise, 0, 255).astype(np.uint8)

    def pixels(self, key: str) -> np.ndarray:
        digest = hashlib.blake2b(key.encode(), digest_size=16).digest()
        height, width = self.base.shape[:2]
        dy = int.from_bytes(digest[:4], "little") % max(height, 1)
        dx = int.from_bytes(digest[4:8], "little") % max(width, 1)
        arr = np.roll(self.base, (dy, dx), axis=(0, 1))
        stamp = np.frombuffer(digest, dtype=np.uint8)[: min(16, width)]
        arr[0, : len(stamp), 0] = stamp  # a few id-derived pixels make even tiny images unique
        return arr


def _box_blur(arr: np.ndarray, k: int, axis: int) -> np.ndarray:
    pad = [(0, 0)] * arr.ndim
    pad[axis] = (k, 0)
    csum = np.cumsum(np.pad(arr, pad, mode="edge"), axis=axis)
    upper = np.take(csum, range(k, csum.shape[axis]), axis=axis)
    lower = np.take(csum, range(0, csum.shape[axis] - k), axis=axis)
    return (upper - lower) / k


def encode_image(texture: TextureFactory, key: str, mode: str) -> bytes:
    """Encode one image; fixed settings and no metadata, so bytes depend only on (seed, size, key, mode)."""
    image = Image.fromarray(texture.pixels(key), "RGB")
    buf = io.BytesIO()
    if mode == "PNG":  # a PNG file named .jpg, as occasionally found in scraped image sets
        image.save(buf, "PNG", optimize=False, compress_level=6)
    else:
        if mode != "RGB":
            image = image.convert(mode)
        image.save(buf, "JPEG", quality=JPEG_QUALITY, optimize=False, progressive=False, subsampling=2)
    return buf.getvalue()


def truncate_jpeg(data: bytes) -> bytes:
    """Keep the first ~60% of a JPEG, never less than its headers: Image.open still succeeds, only
    decoding the pixels (load()) notices the damage."""
    start_of_scan = data.find(b"\xff\xda")
    cut = max(int(len(data) * 0.6), start_of_scan + 16)
    if start_of_scan < 0 or cut >= len(data) - 2:
        raise ValueError("image too small to truncate meaningfully")
    return data[:cut]


def write_image_zip(out: Path, zip_plan: ImageZipPlan, texture: TextureFactory, extra_ids: Iterable = ()) -> dict:
    """Write one image archive (members stored, sorted by name, with the folder entry first).

    Returns {image_id: mode} of the images written."""
    modes = dict(zip_plan.modes)
    for image_id in extra_ids:
        modes.setdefault(image_id, "RGB")
    members = sorted((zip_plan.member(i), i) for i in modes if i not in zip_plan.missing)

    def build(item):
        member, image_id = item
        data = encode_image(texture, f"{zip_plan.name}:{image_id}", modes[image_id])
        return truncate_jpeg(data) if image_id in zip_plan.corrupt else data

    # Pillow releases the GIL while encoding, so threads help on big mirrors; map() keeps the order, and
    # batches bound the memory held by encoded images waiting to be written.
    workers = min(8, os.cpu_count() or 1) if len(members) > 200 else 1
    with _AtomicZip(out / zip_plan.name) as zf, ThreadPoolExecutor(workers) as pool:
        zf.writestr(_zip_info(zip_plan.prefix, zipfile.ZIP_STORED), b"")  # the folder entry real zips have
        for start in range(0, len(members), 256):
            batch = members[start:start + 256]
            encoded = pool.map(build, batch) if workers > 1 else map(build, batch)
            for (member, _), data in zip(batch, encoded):
                zf.writestr(_zip_info(member, zipfile.ZIP_STORED), data)
    return modes


# --------------------------------------------------------------------------------------------------------
# Manifest.
# --------------------------------------------------------------------------------------------------------
def _expected_skips(plan: SplitPlan, per_image: int) -> tuple[int, dict]:
    """(items_total, expected_skipped) with the builder's skip precedence: no_annotation before image
    problems; an item counts once."""
    skipped = {"missing_image": 0, "corrupt_image": 0, "no_annotation": 0}
    if plan.source == "coco":
        skipped["missing_image"] = len(plan.missing)
        skipped["corrupt_image"] = len(plan.corrupt)
        return len(plan.image_ids), skipped
    if plan.source == "gqa":
        per = {i: per_image for i in plan.image_ids}
    else:
        per = {i: len(plan.questions[i]) for i in plan.image_ids}
    total = sum(per.values()) + len(plan.orphans)
    skipped["no_annotation"] = len(plan.orphans)
    skipped["missing_image"] = sum(per[i] for i in plan.missing)
    skipped["corrupt_image"] = sum(per[i] for i in plan.corrupt)
    return total, skipped


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _quirk_notes(plans: dict, gqa_ids: dict | None) -> dict:
    notes: dict[str, Any] = {}
    by_source = {}
    for (source, split), plan in plans.items():
        by_source.setdefault(source, {})[split] = plan
    if "vqav2" in by_source:
        notes["vqav2"] = {
            "questions_not_in_question_id_order": "both question files and both annotation files are shuffled "
                                                  "(train starts with 458752000); questions and annotations differ in order",
            "answers0_differs_from_mca": {s: p.quirks["answers0_differs_from_mca"] for s, p in by_source["vqav2"].items()},
            "answer_ids_listed_shuffled": {s: p.quirks["answer_ids_listed_shuffled"] for s, p in by_source["vqav2"].items()},
            "answer_types": ["yes/no", "number", "other"],
            "annotation_headers_after_list": "data_type follows the annotations list",
            "real_records": [458752000, 393714000, 263006000, 263006001],
        }
    if "okvqa" in by_source:
        notes["okvqa"] = {
            "majority_tie_first_wins": {s: p.quirks["majority_tie_first_wins"] for s, p in by_source["okvqa"].items()},
            "question_type_not_in_map": {s: p.quirks["question_type_not_in_map"] for s, p in by_source["okvqa"].items()},
            "question_types_position": {"train": "after annotations", "validation": "before annotations"},
            "raw_answer_differs_from_answer": "e.g. 'pony tail' -> 'ponytail', 'braids' -> 'braid'",
            "real_records": sorted(OKVQA_REAL_QUESTIONS),
        }
    if gqa_ids is not None:
        n_prefixed = {s: [i for i in p.image_ids if i.startswith("n")] for s, p in by_source["gqa"].items()}
        notes["gqa"] = {
            "leading_zero_ids": "all question ids are 8-digit zero-padded strings, e.g. "
                                + ", ".join(q for s in SPLITS for q in list(_first_qids(gqa_ids[s]))[:1]),
            "n_prefixed_image_ids": n_prefixed,
            "groups_global_null": "verify/logical/compare questions, e.g. 02930152",
            "slice_annotation_keys": "two-word object names give keys like '3:5'",
            "val_records_sorted_keys": "val_balanced records are written with sorted keys, train ones in the real train order",
            "decoy_members": ["train_all_questions/train_all_questions_0.json", "train_all_questions/train_all_questions_1.json",
                              "val_all_questions.json", "testdev_balanced_questions.json",
                              "test_balanced_questions.json", "challenge_balanced_questions.json"],
            "decoy_images_in_images_zip": "testdev/test/challenge images are in images.zip but in no balanced file",
            "real_records": {"train": GQA_REAL_TRAIN[0], "validation": GQA_REAL_VAL[0]},
        }
    if "coco" in by_source:
        notes["coco"] = {name: {s: p.quirks.get(name, []) for s, p in by_source["coco"].items()}
                         for name in ("newline", "space_runs", "leading_trailing_spaces", "more_than_5_captions")}
        notes["coco"]["captions_ascending_id_not_grouped_by_image"] = True
        notes["coco"]["real_records"] = {"train_captions": [48, 67, 126, 148], "validation_captions": [37, 38, 49],
                                         "validation_images": [391895, 522418]}
    notes["images"] = {"zip_folder_entries": "every image zip starts with its folder entry (e.g. 'train2014/')",
                       "modes": "one grayscale (L), one CMYK and one PNG-encoded .jpg per image zip split; see image_modes"}
    return notes


def _first_qids(ids: GqaIds) -> Iterator[str]:
    for qids in ids.per_image.values():
        yield from qids


# --------------------------------------------------------------------------------------------------------
# Entry points.
# --------------------------------------------------------------------------------------------------------
def _resolve_counts(images_per_split: int, images: dict | None, sources: tuple) -> dict:
    counts = {source: {split: images_per_split for split in SPLITS} for source in SOURCES}
    for source, value in (images or {}).items():
        if source not in SOURCES:
            raise ValueError(f"images: unknown source {source!r} (expected one of {', '.join(SOURCES)})")
        if isinstance(value, dict):  # per-split override {"train": n, "validation": m}
            counts[source].update({split: int(value[split]) for split in value})
        else:
            counts[source] = {split: int(value) for split in SPLITS}
    for source in sources:
        for split, count in counts[source].items():
            if count < 0:
                raise ValueError(f"images: negative image count for {source}/{split}")
    return counts


def write_sample_mirror(out_dir, *, images_per_split: int = 6, questions_per_image: int = 3,
                        image_size: tuple[int, int] = (64, 48), images: dict | None = None,
                        sources: tuple = SOURCES, broken: bool = True, seed: int = 0) -> dict:
    """Write the mirror into `out_dir` and return its manifest (also written as sample_mirror_manifest.json).

    images: per-source image count per split, overriding images_per_split, e.g. {"gqa": 15000}; a value
    may also be {"train": n, "validation": m}."""
    sources = tuple(dict.fromkeys(sources))
    unknown = [s for s in sources if s not in SOURCES]
    if unknown:
        raise ValueError(f"unknown source(s) {unknown}; expected some of {list(SOURCES)}")
    if not 1 <= questions_per_image <= 999:
        raise ValueError("questions_per_image must be in 1..999 (VQAv2 question ids are image_id*1000+k)")
    width, height = (int(v) for v in image_size)
    if width < 8 or height < 8:
        raise ValueError("image_size must be at least 8x8")
    counts = _resolve_counts(images_per_split, images, sources)
    out = Path(out_dir)
    check_destination(out)
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()

    plans, coco_zips = _plan_coco_family(counts, sources, broken, seed)
    gqa_zip, gqa_ids = None, None
    if "gqa" in sources:
        gqa_plans, gqa_zip = _plan_gqa(counts, broken, seed)
        plans.update(gqa_plans)
        gqa_ids = _allocate_gqa_ids(plans, questions_per_image, seed)
    for (source, split), plan in plans.items():
        if source in ("vqav2", "okvqa"):
            _plan_vqa_questions(plan, questions_per_image, broken)
            _plan_quirk_targets(plan)

    texture = TextureFactory((width, height), seed)
    files: list[str] = []
    if "vqav2" in sources:
        files += write_vqav2(out, plans, seed)
    if "okvqa" in sources:
        files += write_okvqa(out, plans, seed)
    if "gqa" in sources:
        decoy_image_ids = write_gqa_questions(out, plans, gqa_ids, seed)
        write_image_zip(out, gqa_zip, texture, extra_ids=decoy_image_ids)
        files += [GQA_QUESTIONS_ZIP, GQA_IMAGES_ZIP] + write_visual_genome(out, plans, seed)
    if "coco" in sources or "gqa" in sources:  # GQA's leakage control needs COCO's image lists
        files += write_coco_annotations(out, plans, seed, (width, height))
    for split, zip_plan in coco_zips.items():
        write_image_zip(out, zip_plan, texture)
        files.append(zip_plan.name)

    manifest = _build_manifest(out, files, plans, coco_zips, gqa_zip, gqa_ids, counts,
                               dict(images_per_split=images_per_split, questions_per_image=questions_per_image,
                                    image_size=[width, height], sources=list(sources), broken=broken, seed=seed))
    (out / MANIFEST_NAME).write_text(json.dumps(manifest, indent=1) + "\n")
    total = sum(f["bytes"] for f in manifest["files"].values())
    log.info("wrote %d files, %.1f MB, to %s in %.2f s (%s)", len(files), total / 1e6, out,
             time.perf_counter() - started,
             ", ".join(f"{n} {f['bytes'] / 1e6:.2f} MB" for n, f in manifest["files"].items()))
    return manifest


def check_destination(out: Path) -> None:
    """Refuse (ValueError, one line) a dataset repository's data/ folder or anything under it, and a
    directory holding mirror-like files (.zip, .json) that an earlier run of this generator did not
    write: they are only overwritten when the manifest there lists them."""
    resolved = out.resolve()
    for folder in (resolved, *resolved.parents):
        if folder.name == "data" and _is_dataset_repository(folder.parent):
            raise ValueError(f"{out}: inside {folder}, a dataset repository's data folder, which holds only shards "
                             "built from the real sources; write the mirror somewhere else")
    if not out.is_dir():
        return
    manifest = out / MANIFEST_NAME
    listed: set = set()
    if manifest.exists():
        try:
            listed = set(json.loads(manifest.read_text())["files"])
        except (ValueError, KeyError, TypeError):
            raise ValueError(f"{manifest}: not a manifest written by this generator; refusing to overwrite it") from None
    for name in sorted(os.listdir(out)):
        if name.endswith((".zip", ".json")) and name != MANIFEST_NAME and name not in listed:
            raise ValueError(f"{out / name}: not written by this generator (not in {MANIFEST_NAME}); refusing to "
                             "overwrite it: choose an empty directory")


def _is_dataset_repository(folder: Path) -> bool:
    if (folder / "arr_coc_vqa.py").exists():
        return True
    readme = folder / "README.md"
    if not readme.is_file():
        return False
    front = re.match(r"---[ \t]*\r?\n(.*?)\r?\n---", readme.read_text(encoding="utf-8", errors="replace"), re.S)
    return bool(front and re.search(r"^configs:", front.group(1), re.M))


def _build_manifest(out: Path, files: list[str], plans: dict, coco_zips: dict, gqa_zip, gqa_ids, counts: dict,
                    params: dict) -> dict:
    sources_out: dict[str, dict] = {}
    for source in SOURCES:
        for split in SPLITS:
            plan = plans.get((source, split))
            if plan is None:
                continue
            zip_plan = gqa_zip if source == "gqa" else coco_zips[split]
            per_image = params["questions_per_image"]
            total, skipped = _expected_skips(plan, per_image)
            if source == "gqa":  # leakage control's skips, with their image ids and the whole id map
                skipped[OVERLAP_REASON[split]] = per_image * len(plan.overlap)
            entry = {
                "original_split": plan.original_split,
                "image_archive": zip_plan.name,
                "image_ids": [str(i) for i in plan.image_ids],
                "items_total": total,
                "expected_skipped": skipped,
                "broken": {"missing_image": [str(i) for i in sorted(plan.missing, key=str)],
                           "corrupt_image": [str(i) for i in sorted(plan.corrupt, key=str)],
                           "no_annotation": [str(q) for q in sorted(plan.orphans)]},
                "image_modes": {str(i): zip_plan.modes[i] for i in plan.image_ids if i in zip_plan.modes},
            }
            if source == "gqa":
                entry["overlap"] = {OVERLAP_REASON[split]: list(plan.overlap)}
                entry["coco_ids"] = {str(i): (None if c is None else str(c)) for i, c in plan.coco_ids.items()}
            sources_out.setdefault(source, {})[split] = entry
    resolved = {s: counts[s] for s in params["sources"]}
    return {
        "seed": params["seed"],
        "params": {**params, "images": resolved},
        "files": {name: {"bytes": (out / name).stat().st_size, "sha256": _sha256(out / name)} for name in sorted(files)},
        "sources": sources_out,
        "quirks": _quirk_notes(plans, gqa_ids),
    }


def _parse_size(text: str) -> tuple[int, int]:
    try:
        width, height = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"image size must look like 64x48, got {text!r}") from None
    return width, height


def _parse_sources(text: str) -> tuple[str, ...]:
    names = tuple(s.strip() for s in text.split(",") if s.strip())
    bad = [s for s in names if s not in SOURCES]
    if bad or not names:
        raise argparse.ArgumentTypeError(f"--sources: expected a comma list of {','.join(SOURCES)}, got {text!r}")
    return names


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out_dir", type=Path, help="directory to write the mirror into (created if needed)")
    parser.add_argument("--images-per-split", type=int, default=6, help="images per source and split (default 6)")
    parser.add_argument("--questions-per-image", type=int, default=3, help="VQAv2/GQA questions per image (default 3)")
    parser.add_argument("--image-size", type=_parse_size, default=(64, 48), help="WxH of generated images (default 64x48)")
    for source in SOURCES:
        parser.add_argument(f"--{source}-images", type=int, default=None, metavar="N",
                            help=f"images per split for {source} (overrides --images-per-split)")
    parser.add_argument("--sources", type=_parse_sources, default=SOURCES, help="comma list (default: all four)")
    parser.add_argument("--no-broken", dest="broken", action="store_false", help="leave out the broken cases")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    overrides = {s: getattr(args, f"{s}_images") for s in SOURCES if getattr(args, f"{s}_images") is not None}
    try:
        write_sample_mirror(args.out_dir, images_per_split=args.images_per_split,
                            questions_per_image=args.questions_per_image, image_size=args.image_size,
                            images=overrides or None, sources=args.sources, broken=args.broken, seed=args.seed)
    except (ValueError, OSError) as exc:
        log.error("make_sample_mirror: %s", exc)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
