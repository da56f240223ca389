"""OK-VQA (annotations v1.1): VQA-style files without `multiple_choice_answer`.

The annotations file also carries `question_types`, a map from code ("one" .. "ten", "other") to a
readable category; it may come before or after the `annotations` list.
"""

from collections import Counter
from typing import BinaryIO, Iterator, Mapping

from ..process.errors import SourceFormatError
from .fields import blank, integer_id, optional_text
from .jsonstream import iter_list_items, read_value
from .records import Annotation, SharedValues
from .unique import UniqueIds
from .vqav2 import (
    answers_in_id_order,
    checked_answer_type,
    iter_questions,  # noqa: F401  (same question format as VQAv2)
    question_ids,
    record_question_id,
)


def read_question_types(stream: BinaryIO, filename: str) -> dict[str, str]:
    question_types = read_value(stream, "question_types", filename)
    if question_types is None:
        return {}
    if not isinstance(question_types, dict) or not all(isinstance(name, str) for name in question_types.values()):
        raise SourceFormatError(filename, "'question_types' must be an object mapping codes to names (strings)")
    return dict(question_types)


def iter_annotations(stream: BinaryIO, filename: str, question_types: Mapping[str, str]) -> Iterator[Annotation]:
    shared = SharedValues()
    seen = UniqueIds(filename, "annotations", "question_id")
    for index, record in enumerate(iter_list_items(stream, "annotations", filename)):
        question_id = record_question_id(record, filename, "annotations", index)
        seen.add(question_id)
        answers = answers_in_id_order(record, filename, shared)
        code = optional_text(record, "question_type", filename, question_id)
        yield Annotation(
            question_id=question_id,
            image_id=integer_id(record, "image_id", filename, question_id),
            answer=training_answer(answers, filename, question_id),
            answers=answers,
            # The readable category; the code itself when the file's map lacks it.
            question_type=question_types.get(code, code),
            answer_type=checked_answer_type(record, filename),
        )
    seen.check(lambda: question_ids(stream, "annotations", filename))


def training_answer(answers: tuple[str, ...], filename: str, question_id: str) -> str:
    """The majority answer, which must not be blank: it becomes the assistant turn.

    A blank among the ten reference answers is left as it is (they only score predictions)."""
    answer = majority_answer(answers)
    if not answer.strip():
        raise blank(filename, "answer", answer, question_id)
    return answer


def majority_answer(answers: tuple[str, ...]) -> str:
    """The most frequent answer; on a tie, the one that occurs first (in answer_id order).

    Counter.most_common sorts stably, so equal counts keep first-insertion order.
    """
    return Counter(answers).most_common(1)[0][0]
