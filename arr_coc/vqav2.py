"""VQAv2 ("Balanced Real Images" v2.0) questions and annotations files.

Questions: {"questions": [{"question_id": int, "image_id": int, "question": str}], ...}
Annotations: {"annotations": [{"question_id", "image_id", "question_type", "answer_type", "answers": [10 x
{"answer_id", "answer", "answer_confidence"}], "multiple_choice_answer"}], ...}
"""

from typing import BinaryIO, Iterator

from .errors import SourceFormatError
from .jsonstream import iter_list_items
from .records import Annotation, Question, SharedValues
from .schema import ANSWER_TYPES


def iter_questions(stream: BinaryIO, filename: str) -> Iterator[Question]:
    """VQA-style questions (VQAv2 and OK-VQA share the format)."""
    shared = SharedValues()
    for index, record in enumerate(iter_list_items(stream, "questions", filename)):
        _require(record, ("question_id", "image_id", "question"), filename, index)
        yield Question(
            question_id=str(record["question_id"]),
            image_id=shared(str(record["image_id"])),
            question=_require_text(record, "question", filename, record["question_id"]),
        )


def iter_annotations(stream: BinaryIO, filename: str) -> Iterator[Annotation]:
    shared = SharedValues()
    for index, record in enumerate(iter_list_items(stream, "annotations", filename)):
        _require(record, ("question_id", "image_id", "answers", "multiple_choice_answer"), filename, index)
        question_id = record["question_id"]
        yield Annotation(
            question_id=str(question_id),
            image_id=str(record["image_id"]),
            # The official majority answer, even where answers[0] says something else.
            answer=shared(_require_text(record, "multiple_choice_answer", filename, question_id)),
            answers=answers_in_id_order(record, filename, shared),
            question_type=shared(str(record.get("question_type", ""))),
            answer_type=checked_answer_type(record, filename),
        )


def answers_in_id_order(record: dict, filename: str, shared=None) -> tuple[str, ...]:
    """All reference answers sorted by answer_id: what VQA accuracy needs.

    `shared` (a `SharedValues`) gives repeated answers and answer lists one object each."""
    answers = record["answers"]
    if not isinstance(answers, list) or not answers:
        raise SourceFormatError(filename, "'answers' must be a non-empty list", record.get("question_id"))
    try:
        ordered = sorted(answers, key=lambda answer: answer["answer_id"])
        texts = tuple(str(answer["answer"]) for answer in ordered)
    except (KeyError, TypeError):
        raise SourceFormatError(filename, "every answer needs 'answer_id' and 'answer'", record.get("question_id")) from None
    if shared is None:
        return texts
    return shared(tuple(shared(text) for text in texts))


def checked_answer_type(record: dict, filename: str) -> str:
    answer_type = record.get("answer_type")
    if answer_type not in ANSWER_TYPES:
        raise SourceFormatError(
            filename, f"answer_type {answer_type!r} is not one of {list(ANSWER_TYPES)}", record.get("question_id")
        )
    return answer_type


def _require(record, keys, filename: str, index: int) -> None:
    if not isinstance(record, dict):
        raise SourceFormatError(filename, f"item {index} is a {type(record).__name__}, not an object")
    missing = [key for key in keys if key not in record]
    if missing:
        raise SourceFormatError(filename, f"missing field(s) {missing}", record.get("question_id", f"#{index}"))


def _require_text(record: dict, key: str, filename: str, record_id) -> str:
    value = record[key]
    if not isinstance(value, str):
        raise SourceFormatError(filename, f"{key!r} must be a string, got {value!r}", record_id)
    return value
