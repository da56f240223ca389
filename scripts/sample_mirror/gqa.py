"""GQA 1.2 records: questions1.2.zip with the balanced files of both splits and the decoy files.

Invented questions follow the real records' shape (semantic program, semanticStr, annotation spans,
types, groups), so records are about as large as real ones, which matters for benchmarks.  Question ids
are 8-digit zero-padded strings allocated in blocks per image around the real records' ids.  The decoy
members (other splits, unbalanced and test questions) are files the builder must ignore.
"""
from __future__ import annotations

import itertools
import json
import random
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator

from sample_mirror.names import GQA_QUESTIONS_ZIP, SPLITS
from sample_mirror.plan import SplitPlan, gqa_id_pool
from sample_mirror.real_records import GQA_REAL_RECORDS
from sample_mirror.vocabulary import COLORS, GQA_OBJECTS, GQA_RELATIONS
from sample_mirror.zipjson import ZIP64_THRESHOLD, AtomicZip, zip_info


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
                       "fullAnswer": {_span("No, the" if not both else f"Yes, both the {o1} and the", o2): id2}}
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


def allocate_gqa_ids(plans: dict, per_image: int, seed: int) -> dict[str, GqaIds]:
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
    test_pool = gqa_id_pool(seed, "test")
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
    with AtomicZip(out / GQA_QUESTIONS_ZIP) as zf:
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
    with zf.open(zip_info(name, zipfile.ZIP_DEFLATED), "w", force_zip64=large) as fh:
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
