"""Each source reader against fixtures copied from the real records in reference/source-formats.md."""

import dataclasses
import io
import json
import os

import numpy as np
import pytest

from arr_coc.pipeline.collect import collect_coco, collect_gqa, collect_vqa, new_image_items
from arr_coc.pipeline.conversations import caption_rows, question_order, vqa_rows
from arr_coc.pipeline.images import CheckedImage
from arr_coc.pipeline.selection import ImageSelector
from arr_coc.process.errors import SourceFormatError
from arr_coc.readers import coco, gqa, okvqa, vqav2


def stream(document) -> io.BytesIO:
    return io.BytesIO(json.dumps(document).encode())


def answers(*texts, confidence="yes"):
    return [{"answer": text, "answer_confidence": confidence, "answer_id": i + 1} for i, text in enumerate(texts)]


# Real VQAv2 annotation (question 393714000): answers[0] is "light blue", the majority is "white".
VQAV2_393714000 = {
    "question_type": "what color are the",
    "multiple_choice_answer": "white",
    "answers": answers("light blue", *["white"] * 9),
    "image_id": 393714,
    "answer_type": "other",
    "question_id": 393714000,
}
# Real GQA records: train "02930152" and the val parrot question.
GQA_02930152 = {
    "semantic": [
        {"operation": "select", "dependencies": [], "argument": "sky (2486325)"},
        {"operation": "verify color", "dependencies": [0], "argument": "dark"},
    ],
    "entailed": ["02930160", "02930158", "02930159", "02930154", "02930155", "02930156", "02930153"],
    "equivalent": ["02930152"],
    "question": "Is the sky dark?",
    "imageId": "2354786",
    "isBalanced": True,
    "groups": {"global": None, "local": "06-sky_dark"},
    "answer": "yes",
    "semanticStr": "select: sky (2486325)->verify color: dark [0]",
    "annotations": {"answer": {}, "question": {"2": "2486325"}, "fullAnswer": {"2": "2486325"}},
    "types": {"detailed": "verifyAttr", "semantic": "attr", "structural": "verify"},
    "fullAnswer": "Yes, the sky is dark.",
}
GQA_05515938 = {
    "annotations": {"answer": {"0": "329774"}, "fullAnswer": {"3": "329774"}, "question": {"3": "329774"}},
    "answer": "parrot",
    "entailed": ["05515937", "05515936", "05515922", "05515921"],
    "equivalent": ["05515938"],
    "fullAnswer": "This is a parrot.",
    "groups": {"global": "bird", "local": "11q-bird"},
    "imageId": "2405722",
    "isBalanced": True,
    "question": "What is this bird called?",
    "semantic": [
        {"argument": "bird (329774)", "dependencies": [], "operation": "select"},
        {"argument": "name", "dependencies": [0], "operation": "query"},
    ],
    "semanticStr": "select: bird (329774)->query: name [0]",
    "types": {"detailed": "categoryThis", "semantic": "cat", "structural": "query"},
}
OKVQA_TYPES = {
    "one": "Vehicles and Transportation",
    "four": "Sports and Recreation",
    "seven": "People and Everyday life",
    "other": "Other",
}


def test_vqav2_uses_multiple_choice_answer_and_keeps_all_answers_in_id_order():
    record = dict(VQAV2_393714000, answers=list(reversed(VQAV2_393714000["answers"])))  # file order != id order
    [annotation] = vqav2.iter_annotations(stream({"annotations": [record]}), "ann.json")
    assert annotation.answer == "white"
    assert annotation.answers[0] == "light blue" and annotation.answers.count("white") == 9
    assert annotation.question_id == "393714000" and annotation.image_id == "393714"
    assert annotation.question_type == "what color are the" and annotation.answer_type == "other"


def test_vqav2_questions_keep_source_spelling():
    questions = {
        "info": {"description": "This is v2.0 of the VQA dataset.", "version": "2.0"},
        "task_type": "Open-Ended",
        "data_subtype": "train2014",
        "questions": [
            {"image_id": 458752, "question": "What is this photo taken looking through?", "question_id": 458752000},
            {"image_id": 263006, "question": "How many people are pictured?", "question_id": 263006000},
        ],
    }
    records = list(vqav2.iter_questions(stream(questions), "q.json"))
    assert [(q.question_id, q.image_id) for q in records] == [("458752000", "458752"), ("263006000", "263006")]
    assert records[0].question == "What is this photo taken looking through?"


def test_vqav2_rejects_unknown_answer_type_naming_file_and_record():
    record = dict(VQAV2_393714000, answer_type="colour")
    with pytest.raises(SourceFormatError, match=r"ann\.json: record 393714000: answer_type 'colour'"):
        list(vqav2.iter_annotations(stream({"annotations": [record]}), "ann.json"))


def test_truncated_json_names_the_file():
    data = json.dumps({"annotations": [VQAV2_393714000, VQAV2_393714000]}).encode()
    with pytest.raises(SourceFormatError, match=r"v2_mscoco_train2014_annotations\.json.*truncated JSON after 1 records"):
        list(vqav2.iter_annotations(io.BytesIO(data[: len(data) * 3 // 4]), "v2_mscoco_train2014_annotations.json"))


def test_okvqa_majority_answer_with_first_occurrence_tie_rule():
    # 4 x "pony tail" and 4 x "ponytail": the tie goes to the one whose first answer_id is lower.
    texts = ["ponytail", "pony tail", "pony tail", "ponytail", "braid", "pony tail", "ponytail", "ponytail", "pony tail", "bun"]
    record = {
        "image_id": 51606,
        "answer_type": "other",
        "question_type": "four",
        "question_id": 516065,
        "confidence": 3,
        "answers": [
            {"answer_id": i + 1, "raw_answer": text, "answer_confidence": "yes", "answer": text} for i, text in enumerate(texts)
        ],
    }
    # answer_id 1 says "ponytail": listing the answers in reverse must not change the winner.
    record["answers"].reverse()
    [annotation] = okvqa.iter_annotations(stream({"annotations": [record]}), "ok.json", OKVQA_TYPES)
    assert annotation.answer == "ponytail"
    assert list(annotation.answers) == texts
    assert annotation.question_type == "Sports and Recreation"


def test_okvqa_majority_is_a_plain_majority_when_untied():
    assert okvqa.majority_answer(("a", "b", "b", "c")) == "b"
    assert okvqa.majority_answer(("a", "b", "b", "a", "c")) == "a"
    assert okvqa.majority_answer(("b", "a", "a", "b")) == "b"


@pytest.mark.parametrize("types_first", [True, False])
def test_okvqa_question_types_map_wherever_it_is_and_code_kept_when_missing(types_first):
    annotations = [
        {"image_id": 81721, "question_id": 817215, "question_type": "seven", "answer_type": "other", "answers": answers("18")},
        {"image_id": 480208, "question_id": 4802085, "question_type": "eleven", "answer_type": "other", "answers": answers("park")},
    ]
    document = {"question_types": OKVQA_TYPES, "annotations": annotations}
    if not types_first:
        document = {"annotations": annotations, "license": {}, "question_types": OKVQA_TYPES}
    question_types = okvqa.read_question_types(stream(document), "ok.json")
    assert question_types == OKVQA_TYPES
    records = list(okvqa.iter_annotations(stream(document), "ok.json", question_types))
    assert [r.question_type for r in records] == ["People and Everyday life", "eleven"]


def test_gqa_dict_layout_keeps_leading_zero_ids_and_string_image_ids():
    document = {"02930152": GQA_02930152, "05515938": GQA_05515938, "00000007": dict(GQA_05515938, imageId="n161313", answer="2")}
    records = list(gqa.iter_questions(stream(document), "train_balanced_questions.json"))
    assert [(image_id, qa.question_id) for image_id, qa in records] == [
        ("2354786", "02930152"),
        ("2405722", "05515938"),
        ("n161313", "00000007"),
    ]
    first = records[0][1]
    assert first.answer == "yes" and first.answers == ("yes",)
    assert first.question_type == "verifyAttr" and first.answer_type == "yes/no"
    assert records[1][1].answer_type == "other" and records[2][1].answer_type == "number"


def test_gqa_full_answer_style_uses_full_answer_without_suffix():
    [(_, qa)] = gqa.iter_questions(stream({"05515938": GQA_05515938}), "val.json", answer_style="full")
    assert qa.answer == "This is a parrot." and qa.answers == ("parrot",)


def test_gqa_question_member_ignores_decoys_and_accepts_one_folder():
    names = [
        "train_all_questions/train_all_questions_0.json",
        "train_all_questions/train_all_questions_1.json",
        "val_all_questions.json",
        "testdev_balanced_questions.json",
        "train_balanced_questions.json",
        "val_balanced_questions.json",
    ]
    assert gqa.find_question_member(names, "train_balanced_questions.json", "q.zip") == "train_balanced_questions.json"
    nested = ["questions1.2/" + name for name in names[2:]]
    assert gqa.find_question_member(nested, "val_balanced_questions.json", "q.zip") == "questions1.2/val_balanced_questions.json"
    with pytest.raises(SourceFormatError, match="q.zip: no member named train_balanced_questions.json"):
        gqa.find_question_member(names[:4], "train_balanced_questions.json", "q.zip")


def test_coco_captions_normalised_and_grouped_by_image_in_caption_id_order():
    document = {
        "info": {"description": "COCO 2014 Dataset"},
        "images": [
            {"license": 3, "file_name": "COCO_train2014_000000318556.jpg", "height": 480, "width": 640, "id": 318556},
            {"license": 4, "file_name": "COCO_train2014_000000116100.jpg", "height": 427, "width": 640, "id": 116100},
        ],
        "licenses": [],
        "annotations": [
            {"image_id": 318556, "id": 48, "caption": "A very clean and well decorated empty bathroom"},
            {"image_id": 116100, "id": 67, "caption": "A panoramic view of a kitchen and all of its appliances."},
            {"image_id": 318556, "id": 126, "caption": "A blue and white bathroom with butterfly themed wall tiles.\n"},
            {"image_id": 116100, "id": 148, "caption": "A panoramic photo of a kitchen and dining room"},
            {"image_id": 318556, "id": 219, "caption": "  A bathroom with a  border of\nbutterflies and blue paint on the walls above it. "},
            {"image_id": 318556, "id": 255, "caption": "An angled view of a beautifully decorated bathroom."},
            {"image_id": 318556, "id": 3555, "caption": "A clock that blends in with the wall hangs in a bathroom. "},
            {"image_id": 318556, "id": 7, "caption": "A bathroom\twith a sink."},
        ],
    }
    assert list(coco.iter_images(stream(document), "cap.json")) == [
        ("318556", "COCO_train2014_000000318556.jpg"),
        ("116100", "COCO_train2014_000000116100.jpg"),
    ]
    selector = ImageSelector("coco", None, 0, 1, new_image_items)
    total = collect_coco(coco.iter_images(stream(document), "cap.json"), coco.iter_captions(stream(document), "cap.json"), selector)
    assert total == 2
    entry = {e.image_id: e for e in selector.entries()}["318556"]
    image = CheckedImage(b"jpeg", "COCO_train2014_000000318556.jpg", 640, 480, "0123456789abcdef")
    [row] = caption_rows("train2014", "318556", image, entry.captions, captions_per_image=1, seed=0)
    # six captions (more than 5), in ascending caption id order (7 comes first), whitespace normalised
    assert row["metadata"]["captions"] == [
        "A bathroom with a sink.",
        "A very clean and well decorated empty bathroom",
        "A blue and white bathroom with butterfly themed wall tiles.",
        "A bathroom with a border of butterflies and blue paint on the walls above it.",
        "An angled view of a beautifully decorated bathroom.",
        "A clock that blends in with the wall hangs in a bathroom.",
    ]
    assert row["conversations"][1]["content"] in row["metadata"]["captions"]
    assert row["id"] == "coco/train2014/318556/0" and row["task"] == "caption" and row["metadata"]["qa"] == []


def test_caption_choice_depends_on_seed_and_image_only():
    captions = [coco.Caption(caption_id=i, image_id="1", text=f"caption {i}") for i in range(7)]
    image = CheckedImage(b"x", "a.jpg", 1, 1, "0123456789abcdef")
    first = [list(caption_rows("val2014", "1", image, captions, 3, seed))[0]["conversations"] for seed in range(6)]
    again = [list(caption_rows("val2014", "1", image, list(reversed(captions)), 3, seed))[0]["conversations"] for seed in range(6)]
    assert first == again  # input order does not matter
    assert len({str(c) for c in first}) > 1  # the seed does
    rows = list(caption_rows("val2014", "1", image, captions, 3, 0))
    assert [r["id"] for r in rows] == ["coco/val2014/1/0", "coco/val2014/1/1", "coco/val2014/1/2"]
    assert len({r["conversations"][1]["content"] for r in rows}) == 3


def test_vqa_join_questions_out_of_order_and_missing_annotation():
    questions = {
        "questions": [
            {"image_id": 263006, "question": "What color is the water?", "question_id": 263006001},
            {"image_id": 263006, "question": "How many people are pictured?", "question_id": 263006000},
            {"image_id": 263006, "question": "Is it sunny?", "question_id": 263006010},
            {"image_id": 263006, "question": "Unanswered?", "question_id": 263006002},
        ]
    }
    annotation = lambda qid, answer, answer_type: {  # noqa: E731
        "question_id": qid,
        "image_id": 263006,
        "question_type": "what",
        "answer_type": answer_type,
        "multiple_choice_answer": answer,
        "answers": answers(*[answer] * 10),
    }
    annotations = {
        "annotations": [
            annotation(263006010, "yes", "yes/no"),
            annotation(263006000, "2", "number"),
            annotation(263006001, "blue", "other"),
            dict(annotation(999000, "orphan", "other"), image_id=999),
        ]
    }
    selector = ImageSelector("vqav2", None, 0, 1, new_image_items)
    total = collect_vqa(
        vqav2.iter_questions(stream(questions), "q.json"), vqav2.iter_annotations(stream(annotations), "a.json"), selector, "a.json"
    )
    assert total == 5  # 4 questions + 1 annotation without question
    entries = {e.image_id: e for e in selector.entries()}
    assert entries["999"].unanswered == ["999000"]
    entry = entries["263006"]
    assert entry.unanswered == ["263006002"]
    image = CheckedImage(b"x", "COCO_train2014_000000263006.jpg", 640, 480, "0123456789abcdef")
    # each joined QA carries its answer agreement: ten identical answers, the target among them
    assert {(qa.answer_count, qa.answer_score) for qa in entry.qas} == {(10, 1.0)}
    qas = [dataclasses.replace(qa, answer_count=3, answer_score=0.9) if qa.question_id == "263006001" else qa for qa in entry.qas]
    [row] = vqa_rows("vqav2", "train2014", "263006", image, qas, "\nSUFFIX", None, "263006")
    assert [qa["question_id"] for qa in row["metadata"]["qa"]] == ["263006000", "263006001", "263006010"]
    stored = float(np.float32(0.9))  # the float32 column's value, given as such to streamed rows too
    assert [(qa["answer_count"], qa["answer_score"]) for qa in row["metadata"]["qa"]] == [(10, 1.0), (3, stored), (10, 1.0)]
    assert [turn["role"] for turn in row["conversations"]] == ["user", "assistant"] * 3
    assert row["conversations"][0]["content"] == "How many people are pictured?\nSUFFIX"
    assert [turn["content"] for turn in row["conversations"][1::2]] == ["2", "blue", "yes"]
    chunks = list(vqa_rows("vqav2", "train2014", "263006", image, entry.qas, "", 2, "263006"))
    assert [r["id"] for r in chunks] == ["vqav2/train2014/263006/0", "vqav2/train2014/263006/1"]
    assert [len(r["conversations"]) for r in chunks] == [4, 2]


def test_vqa_join_rejects_annotation_for_another_image():
    questions = {"questions": [{"image_id": 1, "question": "Q?", "question_id": 1000}]}
    annotations = {"annotations": [dict(VQAV2_393714000, question_id=1000, image_id=2)]}
    selector = ImageSelector("vqav2", None, 0, 1, new_image_items)
    with pytest.raises(SourceFormatError, match="a.json: record 1000: image_id 2 differs"):
        collect_vqa(vqav2.iter_questions(stream(questions), "q"), vqav2.iter_annotations(stream(annotations), "a.json"), selector, "a.json")


def test_gqa_question_order_keeps_leading_zero_ids_numeric():
    assert sorted(["02930160", "02930152", "2930153"], key=question_order) == ["02930152", "2930153", "02930160"]


def test_gqa_collect_counts_unanswered_records():
    document = {"02930152": GQA_02930152, "02930153": {"imageId": "2354786", "question": "Is it?", "isBalanced": True}}
    selector = ImageSelector("gqa", None, 0, 1, new_image_items)
    assert collect_gqa(gqa.iter_questions(stream(document), "g.json"), selector) == 2
    [entry] = selector.entries()
    assert [qa.question_id for qa in entry.qas] == ["02930152"] and entry.unanswered == ["02930153"]


REALDATA = os.environ.get("ARR_COC_REALDATA") or os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "..", "shared", "realdata")


def real_file(*parts) -> str:
    path = os.path.join(REALDATA, *parts)
    if not os.path.isfile(path):
        pytest.skip(f"real source files not available at {path} (set ARR_COC_REALDATA)")
    return path


def test_strict_field_checks_accept_the_real_files():
    """The checks against nulls, wrong types and duplicate ids reject nothing in real records."""
    with open(real_file("okvqa", "OpenEnded_mscoco_train2014_questions.json"), "rb") as handle:
        assert len(list(vqav2.iter_questions(handle, "okvqa-train"))) == 9009
    with open(real_file("gqa", "gqa-ood", "val_bal_tail_-0.7.json"), "rb") as handle:
        records = list(gqa.iter_questions(handle, "gqa-val", answer_style="full"))
    assert len(records) == 1358 and all(qa.question_type for _, qa in records)
    with open(real_file("coco", "annotations", "captions_val2014.json"), "rb") as handle:
        assert len(list(coco.iter_images(handle, "captions"))) == 4800
        handle.seek(0)
        assert len(list(coco.iter_captions(handle, "captions"))) == 24019
