"""OK-VQA records: the question and annotation files of both splits, in the official layout.

One question per image, as in the real files.  Each record is a pure function of (seed, question id);
the quirks a builder must handle (a majority tie the first-listed answer wins, a question_type missing
from the question_types map, the map before or after the annotation list) are made here.  The majority
answer is given by as few references as the template's choices allow, up to all ten (answer_count).
"""
from __future__ import annotations

import random
from pathlib import Path

from sample_mirror.names import OKVQA_FILES, SPLITS
from sample_mirror.real_records import CC_BY_4, OKVQA_QUESTION_TYPES, OKVQA_REAL_ANNOTATIONS, OKVQA_REAL_QUESTIONS
from sample_mirror.vocabulary import OKVQA_TEMPLATES
from sample_mirror.zipjson import ZIP64_THRESHOLD, AtomicZip, Stream, write_json_member


def okvqa_record(seed: int, image_id: int, qid: int, quirks: dict) -> tuple[dict, dict]:
    rng = random.Random(seed * 1_000_033 + qid)
    if qid in OKVQA_REAL_QUESTIONS:
        question_text = OKVQA_REAL_QUESTIONS[qid][1]
        qtype, pairs, confidence = OKVQA_REAL_ANNOTATIONS[qid]
    else:
        qtype, question_text, choices = rng.choice(OKVQA_TEMPLATES)
        top = rng.choice(choices)
        pairs = _ten_pairs(rng, top, choices)
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


def _ten_pairs(rng: random.Random, top: tuple, choices: list) -> list:
    """Ten (raw_answer, answer) pairs in which `top`'s answer is given 1..10 times and no other answer
    more often (at least 10 / the number of distinct answers times, so that the others can fill the rest):
    a build sees targets of every agreement the template allows."""
    distinct = len({answer for _, answer in choices})
    votes = rng.randint(-(-10 // distinct), 10)
    others = [c for c in choices if c[1] != top[1]]
    pairs = [top] * votes
    while len(pairs) < 10:
        other = rng.choice(others)
        if sum(answer == other[1] for _, answer in pairs) < votes:
            pairs.append(other)
    rng.shuffle(pairs)
    return pairs


def answer_count(annotation: dict) -> int:
    """How many references give the training answer (the most frequent one), from how the record was
    made: its answers are plain lower-case words that the official evaluation compares as they are."""
    answers = [answer["answer"] for answer in annotation["answers"]]
    return max(answers.count(answer) for answer in answers)


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
        questions = (okvqa_record(seed, i, q, plan.quirks)[0] for i, q in question_order)
        with AtomicZip(out / zip_name) as zf:
            write_json_member(zf, member, [("license", CC_BY_4), ("data_subtype", plan.original_split),
                                           ("task_type", "Open-Ended"), ("questions", Stream("list", questions))], large)
        written.append(zip_name)

        zip_name, member = OKVQA_FILES[("annotations", split)]
        annotations = Stream("list", (okvqa_record(seed, i, q, plan.quirks)[1] for i, q in order))
        # question_types after the annotation list in train and before it in val: key order is irrelevant
        # to JSON, and a streaming reader must find the map wherever it is.
        if split == "train":
            pairs = [("license", CC_BY_4), ("data_subtype", plan.original_split), ("annotations", annotations),
                     ("question_types", OKVQA_QUESTION_TYPES)]
        else:
            pairs = [("license", CC_BY_4), ("data_subtype", plan.original_split),
                     ("question_types", OKVQA_QUESTION_TYPES), ("annotations", annotations)]
        with AtomicZip(out / zip_name) as zf:
            write_json_member(zf, member, pairs, large)
        written.append(zip_name)
    return written
