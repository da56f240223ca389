"""Bad records never vanish and never become data: a one-line error naming the file and record.

Issue 9, items 5-9: a file without its record list, nulls, duplicate ids, ids of the wrong type,
non-UTF-8 bytes far into a file; review item 6: blank questions and training targets. Bad archives
and images: tests/test_bad_archives.py.
"""

import io
import json
import os
import re
import subprocess
import sys

import pytest
from bad_inputs import (
    COCO_CAPTIONS,
    GQA_TRAIN,
    VQAV2_QUESTIONS,
    annotation,
    build_failures,
    coco_document,
    damaged,
    fails,
    gqa_record,
    okvqa_annotation,
    question,
    read_all,
    set_first,
    stream,
)
from helpers import ROOT, make_mirror

from arr_coc.pipeline.collect import collect_vqa, new_image_items
from arr_coc.pipeline.report import ReportInvariantError, check_invariant
from arr_coc.pipeline.selection import ImageSelector
from arr_coc.process.errors import SourceFormatError
from arr_coc.readers import coco, gqa, jsonstream, okvqa, vqav2

BUILD = os.path.join(ROOT, "scripts", "build.py")


@pytest.fixture(scope="module")
def mirror(tmp_path_factory):
    path = tmp_path_factory.mktemp("bad-records-mirror")
    make_mirror(path, images_per_split=4, questions_per_image=2)
    return path


# -- 5: a file without its record list is an error, not an empty source ------------------------


@pytest.mark.parametrize(
    "reader, document, expected",
    [
        (vqav2.iter_questions, {"question": [question(1)]}, "no top-level 'questions' list (top-level keys: ['question'])"),
        (vqav2.iter_annotations, {"annotation": []}, "no top-level 'annotations' list"),
        (vqav2.iter_questions, [question(1)], "the top level is a list, not an object with a 'questions' list"),
        (vqav2.iter_questions, {"questions": {"1": question(1)}}, "'questions' is an object, not a list"),
        (gqa.iter_questions, [gqa_record()], "the top level is a list, not an object of records by id"),
        (coco.iter_images, {"annotations": []}, "no top-level 'images' list"),
        (coco.iter_captions, {"images": [], "annotations": None}, "'annotations' is null, not a list"),
    ],
)
def test_missing_record_list_or_wrong_container_is_one_line_error(reader, document, expected):
    assert expected in fails(reader, document)


def test_empty_record_list_is_still_a_valid_empty_file():
    assert read_all(vqav2.iter_questions, {"questions": []}) == []
    assert read_all(gqa.iter_questions, {}) == []


# -- 6: null never becomes the text "None" -----------------------------------------------------


@pytest.mark.parametrize(
    "reader, document, expected",
    [
        (gqa.iter_questions, {"02930152": gqa_record(answer=None)}, "record 02930152: 'answer' must be a string, got null"),
        (gqa.iter_questions, {"02930152": gqa_record(question=None)}, "record 02930152: 'question' must be a string, got null"),
        (gqa.iter_questions, {"02930152": gqa_record(imageId=None)}, "record 02930152: 'imageId' must be a string, got null"),
        (gqa.iter_questions, {"7": gqa_record(types={"detailed": None})}, "record 7: 'detailed' must be a string, got null"),
        (vqav2.iter_questions, {"questions": [question(5, text=None)]}, "record 5: 'question' must be a string, got null"),
        (vqav2.iter_annotations, {"annotations": [annotation(5, multiple_choice_answer=None)]}, "record 5: 'multiple_choice_answer'"),
        (vqav2.iter_annotations, {"annotations": [annotation(5, answers=[{"answer_id": 1, "answer": None}])]}, "record 5: 'answer' must be a string, got null"),
        (vqav2.iter_annotations, {"annotations": [annotation(5, question_type=None)]}, "record 5: 'question_type' must be a string"),
        (vqav2.iter_questions, {"questions": [question(None)]}, "record questions[0]: 'question_id' must be a non-negative integer, got null"),
    ],
)
def test_null_where_text_belongs_is_one_line_error(reader, document, expected):
    assert expected in fails(reader, document)


def test_okvqa_null_answers_are_rejected_not_voted_for():
    record = annotation(5, answers=[{"answer_id": 1, "answer": None}, {"answer_id": 2, "answer": "yes"}])
    del record["multiple_choice_answer"]
    assert "record 5: 'answer' must be a string, got null" in fails(okvqa.iter_annotations, {"annotations": [record]}, {})


def test_gqa_answer_null_fails_the_build_naming_file_and_question(mirror, tmp_path):
    bad = damaged(mirror, tmp_path, *GQA_TRAIN, lambda doc: set_first(doc, "answer", None))
    reasons = build_failures(bad, tmp_path, ("gqa",))
    assert len(reasons) == 1 and "questions1.2.zip:train_balanced_questions.json: record " in reasons[0]
    assert "'answer' must be a string, got null" in reasons[0]


# -- 7: duplicate ids fail whatever the cap ----------------------------------------------------


@pytest.mark.parametrize(
    "reader, document, expected",
    [
        (vqav2.iter_questions, {"questions": [question(1), question(2), question(1, 7)]}, "question_id 1 is used twice, by questions[0] and questions[2]"),
        (vqav2.iter_annotations, {"annotations": [annotation(3), annotation(4), annotation(3)]}, "question_id 3 is used twice, by annotations[0] and annotations[2]"),
        (coco.iter_captions, coco_document(captions=[{"id": 48, "image_id": 1, "caption": "a"}] * 2), "caption id 48 is used twice, by annotations[0] and annotations[1]"),
        (coco.iter_images, coco_document(images=[{"id": 9, "file_name": "a.jpg"}, {"id": 8, "file_name": "b.jpg"}, {"id": 9, "file_name": "c.jpg"}]), "image id 9 is used twice, by images[0] and images[2]"),
    ],
)
def test_duplicate_ids_name_both_records(reader, document, expected):
    assert expected in fails(reader, document)


def test_gqa_duplicate_question_id_names_both_records():
    text = '{"01": %s, "02": %s, "01": %s}' % tuple(json.dumps(gqa_record()) for _ in range(3))
    with pytest.raises(SourceFormatError, match=r"^g\.json: question id 01 is used twice, by questions\[0\] and questions\[2\]$"):
        list(gqa.iter_questions(io.BytesIO(text.encode()), "g.json"))


def test_equal_hashes_of_different_ids_are_not_duplicates(monkeypatch):
    # Force every id into one hash bucket: the second read must tell different ids apart.
    import arr_coc.readers.unique as unique

    monkeypatch.setattr(unique, "hash", lambda _: 7, raising=False)
    records = read_all(vqav2.iter_questions, {"questions": [question(1), question(2), question(3)]})
    assert [record.question_id for record in records] == ["1", "2", "3"]
    assert "question_id 2 is used twice, by questions[1] and questions[3]" in fails(
        vqav2.iter_questions, {"questions": [question(1), question(2), question(3), question(2)]}
    )


@pytest.mark.parametrize("cap", [None, 0, 1])
def test_duplicate_question_fails_whatever_the_cap(cap):
    # Today the second text silently replaced the first, and a capped build never noticed.
    questions = {"questions": [question(10, 1, "first?"), question(20, 2), question(10, 1, "second?")]}
    annotations = {"annotations": [annotation(10, 1), annotation(20, 2)]}
    selector = ImageSelector("vqav2", cap, 0, 1, new_image_items)
    with pytest.raises(SourceFormatError, match=r"q\.json: question_id 10 is used twice, by questions\[0\] and questions\[2\]"):
        collect_vqa(vqav2.iter_questions(stream(questions), "q.json"), vqav2.iter_annotations(stream(annotations), "a.json"), selector, "a.json")


@pytest.mark.parametrize("cap", [None, 0, 1])
def test_duplicate_annotation_fails_whatever_the_cap(cap):
    questions = {"questions": [question(10, 1), question(20, 2)]}
    annotations = {"annotations": [annotation(20, 2), annotation(10, 1), annotation(20, 2)]}
    selector = ImageSelector("vqav2", cap, 0, 1, new_image_items)
    with pytest.raises(SourceFormatError, match=r"a\.json: question_id 20 is used twice, by annotations\[0\] and annotations\[2\]"):
        collect_vqa(vqav2.iter_questions(stream(questions), "q.json"), vqav2.iter_annotations(stream(annotations), "a.json"), selector, "a.json")


def test_invariant_refuses_more_items_selected_than_in_the_source():
    stats = {"items_total": 3, "items_selected": 4, "items_written": 4, "rows_written": 2, "skipped": {}}
    with pytest.raises(ReportInvariantError, match="vqav2/train: 4 items selected of only 3"):
        check_invariant({"sources": {"vqav2": {"train": stats}}}, {"train": 2})
    check_invariant({"sources": {"vqav2": {"train": dict(stats, items_total=4)}}}, {"train": 2})


def test_duplicate_question_fails_a_capped_build(mirror, tmp_path):
    def repeat_first(doc):
        doc["questions"].append(dict(doc["questions"][0], question="A replacement?"))
        return doc

    bad = damaged(mirror, tmp_path, *VQAV2_QUESTIONS, repeat_first)
    reasons = build_failures(bad, tmp_path, ("vqav2",), max_images_train=1)
    assert len(reasons) == 1 and re.search(r"v2_Questions_Train_mscoco\.zip:.*question_id \d+ is used twice, by questions\[0\] and questions\[\d+\]", reasons[0])


# -- 8: ids of the wrong type, and any unexpected failure, in one line with any num_proc ----------


@pytest.mark.parametrize(
    "reader, document, expected",
    [
        (vqav2.iter_questions, {"questions": [question(5, image_id="abc")]}, "record 5: 'image_id' must be a non-negative integer, got 'abc'"),
        (vqav2.iter_annotations, {"annotations": [annotation(5, image_id=1.5)]}, "record 5: 'image_id' must be a non-negative integer, got 1.5"),
        (vqav2.iter_questions, {"questions": [question(True)]}, "record questions[0]: 'question_id' must be a non-negative integer, got True"),
        (coco.iter_captions, coco_document(captions=[{"id": "x48", "image_id": 1, "caption": "a"}]), "record annotations[0]: 'id' must be a non-negative integer, got 'x48'"),
        (coco.iter_images, coco_document(images=[{"id": [1], "file_name": "a.jpg"}]), "record images[0]: 'id' must be a non-negative integer"),
        (gqa.iter_questions, {"02930152": gqa_record(types=["verifyAttr"])}, "record 02930152: 'types' must be an object, got ['verifyAttr']"),
        (gqa.iter_questions, {"02930152": "Is it?"}, "record 02930152: a question must be an object, got str"),
        (vqav2.iter_annotations, {"annotations": [annotation(5, answers=[{"answer_id": 1, "answer": "x"}, "y"])]}, "record 5: every answer needs"),
    ],
)
def test_wrong_types_are_one_line_errors_naming_the_record(reader, document, expected):
    assert expected in fails(reader, document)


def error_line(stderr: str) -> str:
    """The only line of stderr that is not a progress bar or an INFO log."""
    noise = re.compile(r"^(INFO |WARNING |Generating |Map|Loading |Saving )|examples/s\]|it/s\]")
    lines = [line for line in re.split(r"[\r\n]+", stderr) if line.strip() and not noise.search(line)]
    assert len(lines) == 1, stderr
    return lines[0]


BAD_TYPES = {
    "vqav2": (VQAV2_QUESTIONS, lambda doc: set_first(doc["questions"], "image_id", "abc"), r"record \d+: 'image_id' must be"),
    "coco": (COCO_CAPTIONS, lambda doc: set_first(doc["annotations"], "id", "x48"), r"record annotations\[0\]: 'id' must be"),
    "gqa": (GQA_TRAIN, lambda doc: set_first(doc, "types", ["verifyAttr"]), r"record \d+: 'types' must be an object"),
}


@pytest.mark.parametrize("source", sorted(BAD_TYPES))
@pytest.mark.parametrize("num_proc", [None, 2])
def test_bad_record_is_one_reason_with_one_or_two_processes(mirror, tmp_path, source, num_proc):
    (archive, member), change, names = BAD_TYPES[source]
    bad = damaged(mirror, tmp_path, archive, member, change)
    reasons = build_failures(bad, tmp_path, (source,), num_proc=num_proc)
    assert reasons and all(reason.startswith(f"{bad / archive}:{member}: ") and re.search(names, reason) for reason in reasons)


@pytest.mark.parametrize("source, num_proc", [("vqav2", "1"), ("vqav2", "2"), ("coco", "2"), ("gqa", "1")])
def test_bad_record_is_one_line_from_build_py(mirror, tmp_path, source, num_proc):
    (archive, member), change, names = BAD_TYPES[source]
    bad = damaged(mirror, tmp_path, archive, member, change)
    result = subprocess.run(
        [sys.executable, BUILD, "--config", "small", "--data-dir", str(bad), "--output-dir", str(tmp_path / "repo"),
         "--num-proc", num_proc, "--sources", source],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 1
    line = error_line(result.stderr)
    assert line.startswith(f"error: {bad / archive}:{member}: ") and re.search(names, line), line
    assert len(line) < 300 and "Traceback" not in result.stderr


@pytest.mark.parametrize("num_proc", [None, 2])
def test_unexpected_failure_in_a_shard_names_source_split_and_file(mirror, tmp_path, monkeypatch, num_proc):
    import arr_coc.pipeline.shard

    def broken_rows(*args, **kwargs):
        raise ZeroDivisionError("division by zero\n  in a made-up place")

    monkeypatch.setattr(arr_coc.pipeline.shard, "vqa_rows", broken_rows)  # forked workers inherit it
    reasons = build_failures(mirror, tmp_path, ("okvqa",), num_proc=num_proc)
    assert reasons and all("\n" not in reason for reason in reasons)
    assert re.fullmatch(
        rf"{re.escape(str(mirror))}/OpenEnded_mscoco_(train|val)2014_questions\.json\.zip:OpenEnded_mscoco_\w+_questions\.json: "
        r"building okvqa (train|validation) failed: ZeroDivisionError: division by zero in a made-up place",
        reasons[0],
    )


# -- 9: a non-UTF-8 byte is placed by absolute offset and record -------------------------------


def test_invalid_utf8_beyond_the_first_window_reports_absolute_offset_and_record():
    records = [question(i, i, f"Question number {i} with some padding to fill the window?") for i in range(30000)]
    data = json.dumps({"questions": records}).encode()
    assert len(data) > 2 * jsonstream.CHUNK_BYTES
    marker = b"Question number 25000 "
    offset = data.index(marker) + len(marker) - 1  # the space after the number
    data = data[:offset] + b"\xff" + data[offset + 1 :]
    with pytest.raises(SourceFormatError) as raised:
        list(vqav2.iter_questions(io.BytesIO(data), "q.json"))
    assert str(raised.value) == f"q.json: byte 0xff at byte offset {offset} is not valid UTF-8, in record 25000 (counting from 0)"


def test_invalid_utf8_in_a_multibyte_character_cut_by_a_read(monkeypatch):
    monkeypatch.setattr(jsonstream, "CHUNK_BYTES", 7)
    data = '{"questions": [{"q": "é"}, {"q": "ü'.encode() + b"\xc3\x28" + b'"}]}'
    offset = data.index(b"\xc3\x28")
    with pytest.raises(SourceFormatError, match=rf"byte 0xc3 at byte offset {offset} is not valid UTF-8, in record 1 "):
        list(jsonstream.iter_list_items(io.BytesIO(data), "questions", "f"))


# -- review item 6: blank questions and training targets ---------------------------------------


@pytest.mark.parametrize(
    "reader, document, expected",
    [
        (vqav2.iter_questions, {"questions": [question(5, text="")]}, "record 5: 'question' is blank ('')"),
        (vqav2.iter_questions, {"questions": [question(5, text=" \n")]}, "record 5: 'question' is blank (' \\n')"),
        (vqav2.iter_annotations, {"annotations": [annotation(5, multiple_choice_answer="   ")]}, "record 5: 'multiple_choice_answer' is blank ('   ')"),
        (okvqa.iter_annotations, {"annotations": [okvqa_annotation(5, ["", "", "cat"])]}, "record 5: 'answer' is blank ('')"),
        (gqa.iter_questions, {"02930152": gqa_record(question="")}, "record 02930152: 'question' is blank ('')"),
        (gqa.iter_questions, {"02930152": gqa_record(answer=" ")}, "record 02930152: 'answer' is blank (' ')"),
        (coco.iter_captions, coco_document(captions=[{"id": 48, "image_id": 1, "caption": " \n "}]), "record annotations[0]: 'caption' is blank (' \\n ')"),
    ],
)
def test_blank_question_or_training_target_is_one_line_error(reader, document, expected):
    args = ({},) if reader is okvqa.iter_annotations else ()
    assert expected in fails(reader, document, *args)


def test_gqa_blank_full_answer_is_an_error_only_when_it_is_the_target():
    document = {"02930152": gqa_record(fullAnswer="")}
    assert read_all(gqa.iter_questions, document, "short")[0][1].answer == "yes"
    assert "record 02930152: 'fullAnswer' is blank ('')" in fails(gqa.iter_questions, document, "full")


def test_okvqa_blank_reference_answers_stay_when_the_target_is_not_blank():
    [record] = read_all(okvqa.iter_annotations, {"annotations": [okvqa_annotation(5, ["cat", "", "cat"])]}, {})
    assert record.answer == "cat" and record.answers == ("cat", "", "cat")


def test_blank_question_fails_the_build_naming_file_and_question(mirror, tmp_path):
    bad = damaged(mirror, tmp_path, *VQAV2_QUESTIONS, lambda doc: set_first(doc["questions"], "question", ""))
    reasons = build_failures(bad, tmp_path, ("vqav2",))
    assert reasons and all(re.fullmatch(rf"{re.escape(str(bad / VQAV2_QUESTIONS[0]))}:{VQAV2_QUESTIONS[1]}: record \d+: 'question' is blank \(''\)", reason) for reason in reasons)
