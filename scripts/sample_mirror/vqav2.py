"""VQAv2 records: the question and annotation files of both splits, in the official layout.

Each (question, annotation) pair is a pure function of (seed, question id), so the two files, written in
different shuffled orders, always agree.  The real records quoted in the reference are kept verbatim
and the planned per-record quirks (a first answer that is not the majority answer, answers listed out of
answer_id order, the majority answer spelled differently by some or by all references) are applied here.

Agreement: the majority answer is given by 1 to 10 of the ten references (as many as the question's
answer choices allow), so that a build sees every official VQA score; `answer_count` gives the number of
references a correct build counts as agreeing, from how the record was made (the manifest's
expected_answer_counts), not by normalising the answers.
"""
from __future__ import annotations

import json
import random
from pathlib import Path

from sample_mirror.names import SPLITS, VQAV2_FILES
from sample_mirror.plan import SplitPlan
from sample_mirror.real_records import CC_BY_4, VQA_INFO, VQAV2_REAL_ANNOTATIONS, VQAV2_REAL_QUESTIONS, vqa_answers
from sample_mirror.vocabulary import COLORS, VQA_ADJ, VQA_OBJECTS, VQA_OTHER_ANSWERS, VQA_PLURALS
from sample_mirror.zipjson import ZIP64_THRESHOLD, AtomicZip, Stream, write_json_member


# How the official evaluation's normalisation reads a number written as a word (vqaEval.py's manualMap).
NUMBER_WORDS = {"0": "zero", "1": "one", "2": "two", "3": "three", "4": "four", "5": "five", "6": "six", "7": "seven",
                "8": "eight", "9": "nine", "10": "ten"}


def _ten_answers(rng: random.Random, mca: str, choices: list[str]) -> list[str]:
    """Ten answers in which `mca` is given 1..10 times and no other answer more often (at least
    10 / len(choices) times, so that the other choices can fill the rest)."""
    votes = rng.randint(-(-10 // len(choices)), 10)
    others = [c for c in choices if c != mca]
    texts = [mca] * votes
    while len(texts) < 10:
        other = rng.choice(others)
        if texts.count(other) < votes:
            texts.append(other)
    rng.shuffle(texts)
    return texts


def _other_spelling(mca: str) -> str:
    """The answer as the official normalisation still reads as `mca`, unless every reference says it so."""
    return NUMBER_WORDS.get(mca) or mca.capitalize()


def _spelled_differently(texts: list[str], mca: str) -> None:
    """Up to three of the `mca` references spelled as the official normalisation maps back to `mca`: a
    number word or a capital, an article and a final period, upper case between a space and a newline."""
    variants = [_other_spelling(mca), f"the {mca}.", f" {mca.upper()}\n"]
    positions = [i for i, text in enumerate(texts) if text == mca][: len(variants)]
    for position, variant in zip(positions, variants):
        texts[position] = variant


def answer_count(annotation: dict, target: str, quirks: dict) -> int:
    """How many references agree with `target` as the official evaluation counts them, from how the
    record was made: the literal copies, the spelled-differently ones, none when all ten are one other
    spelling (identical references are compared as they are). Invented and real answers are plain
    lower-case words that normalise to themselves."""
    texts = [answer["answer"] for answer in annotation["answers"]]
    if annotation["question_id"] in quirks.get("all_references_spell_the_answer_differently", ()):
        return 0
    spelled = 0
    if annotation["question_id"] in quirks.get("some_references_spell_the_answer_differently", ()):
        spelled = sum(text in (_other_spelling(target), f"the {target}.", f" {target.upper()}\n") for text in texts)
    return texts.count(target) + spelled


def _vqav2_invented(rng: random.Random, image_id: int, qid: int, quirks: dict) -> tuple[dict, dict]:
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
    if qid in quirks.get("some_references_spell_the_answer_differently", ()):
        _spelled_differently(texts, mca)
    if qid in quirks.get("all_references_spell_the_answer_differently", ()):
        texts = [_other_spelling(mca)] * 10
    confidences = rng.choices(["yes", "maybe", "no"], weights=[16, 3, 1], k=10)
    annotation = {"question_type": qtype, "multiple_choice_answer": mca, "answers": vqa_answers(texts, confidences),
                  "image_id": image_id, "answer_type": atype, "question_id": qid}
    return {"image_id": image_id, "question": question, "question_id": qid}, annotation


def vqav2_record(seed: int, image_id: int, qid: int, quirks: dict) -> tuple[dict, dict]:
    """(question, annotation) of one VQAv2 question id; a pure function of (seed, qid)."""
    rng = random.Random(seed * 1_000_003 + qid)
    if qid in VQAV2_REAL_ANNOTATIONS:
        annotation = json.loads(json.dumps(VQAV2_REAL_ANNOTATIONS[qid]))
        question = {"image_id": image_id, "question": VQAV2_REAL_QUESTIONS[qid], "question_id": qid}
    else:
        question, annotation = _vqav2_invented(rng, image_id, qid, quirks)
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
        questions = (vqav2_record(seed, i, q, plan.quirks)[0] for i, q in _vqav2_file_order(plan, seed, "questions"))
        with AtomicZip(out / zip_name) as zf:
            write_json_member(zf, member, [
                ("info", header_info), ("task_type", "Open-Ended"), ("data_type", "mscoco"), ("license", CC_BY_4),
                ("data_subtype", plan.original_split), ("questions", Stream("list", questions))], large)
        written.append(zip_name)

        zip_name, member = VQAV2_FILES[("annotations", split)]
        annotations = (vqav2_record(seed, i, q, plan.quirks)[1] for i, q in _vqav2_file_order(plan, seed, "annotations"))
        with AtomicZip(out / zip_name) as zf:
            # data_type after the list on purpose: a streaming reader must not assume headers come first
            write_json_member(zf, member, [
                ("info", header_info), ("license", CC_BY_4), ("data_subtype", plan.original_split),
                ("annotations", Stream("list", annotations)), ("data_type", "mscoco")], large)
        written.append(zip_name)
    return written
