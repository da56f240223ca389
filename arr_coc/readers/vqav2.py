"""VQAv2 ("Balanced Real Images" v2.0) questions and annotations files.

Questions: {"questions": [{"question_id": int, "image_id": int, "question": str}], ...}
Annotations: {"annotations": [{"question_id", "image_id", "question_type", "answer_type", "answers": [10 x
{"answer_id", "answer", "answer_confidence"}], "multiple_choice_answer"}], ...}
"""

from operator import itemgetter
from typing import BinaryIO, Iterator

from ..process.errors import SourceFormatError
from ..schema import ANSWER_TYPES
from .fields import integer_id, nonblank_text, optional_text, show_value
from .jsonstream import iter_list_items
from .records import Annotation, Question, SharedValues
from .unique import UniqueIds, rewound


def iter_questions(stream: BinaryIO, filename: str) -> Iterator[Question]:
    """VQA-style questions (VQAv2 and OK-VQA share the format)."""
    shared = SharedValues()
    seen = UniqueIds(filename, "questions", "question_id")
    for index, record in enumerate(iter_list_items(stream, "questions", filename)):
        question_id = record_question_id(record, filename, "questions", index)
        seen.add(question_id)
        yield Question(
            question_id=question_id,
            image_id=shared(integer_id(record, "image_id", filename, question_id)),
            question=nonblank_text(record, "question", filename, question_id),
        )
    seen.check(lambda: question_ids(stream, "questions", filename))


def iter_annotations(stream: BinaryIO, filename: str) -> Iterator[Annotation]:
    shared = SharedValues()
    seen = UniqueIds(filename, "annotations", "question_id")
    for index, record in enumerate(iter_list_items(stream, "annotations", filename)):
        question_id = record_question_id(record, filename, "annotations", index)
        seen.add(question_id)
        yield Annotation(
            question_id=question_id,
            image_id=integer_id(record, "image_id", filename, question_id),
            # The official majority answer, even where answers[0] says something else.
            answer=shared(nonblank_text(record, "multiple_choice_answer", filename, question_id)),
            answers=answers_in_id_order(record, filename, shared),
            question_type=shared(optional_text(record, "question_type", filename, question_id)),
            answer_type=checked_answer_type(record, filename),
        )
    seen.check(lambda: question_ids(stream, "annotations", filename))


def record_question_id(record, filename: str, records: str, index: int) -> str:
    """The record's question_id (a record that is no object, or has no valid id, is named by position)."""
    if not isinstance(record, dict):
        raise SourceFormatError(filename, f"{records}[{index}] is {type(record).__name__}, not an object")
    return integer_id(record, "question_id", filename, f"{records}[{index}]")


def question_ids(stream: BinaryIO, records: str, filename: str) -> Iterator[str]:
    """Every record's question_id again, for the duplicate check's second read."""
    for record in iter_list_items(rewound(stream), records, filename):
        yield str(record["question_id"])


def answers_in_id_order(record: dict, filename: str, shared=None) -> tuple[str, ...]:
    """All reference answers sorted by answer_id: what VQA accuracy needs.

    `shared` (a `SharedValues`) gives repeated answers and answer lists one object each."""
    question_id = record.get("question_id")
    answers = record.get("answers")
    if not isinstance(answers, list) or not answers:
        raise SourceFormatError(filename, "'answers' must be a non-empty list", question_id)
    try:
        texts = tuple([answer["answer"] for answer in sorted(answers, key=_answer_id)])
    except (KeyError, TypeError):
        raise SourceFormatError(filename, "every answer needs an 'answer_id' and an 'answer'", question_id) from None
    if set(map(type, texts)) != _ONLY_STRINGS:  # in C, once per record: ten answers per question add up
        wrong = next(answer for answer in texts if not isinstance(answer, str))
        raise SourceFormatError(filename, f"'answer' must be a string, got {show_value(wrong)}", question_id)
    if shared is None:
        return texts
    return shared(tuple(shared(answer) for answer in texts))


_answer_id = itemgetter("answer_id")
_ONLY_STRINGS = {str}


def checked_answer_type(record: dict, filename: str) -> str:
    answer_type = record.get("answer_type")
    if answer_type not in ANSWER_TYPES:
        raise SourceFormatError(
            filename, f"answer_type {answer_type!r} is not one of {list(ANSWER_TYPES)}", record.get("question_id")
        )
    return answer_type
