"""OK-VQA (annotations v1.1): VQA-style files without `multiple_choice_answer`.

The annotations file also carries `question_types`, a map from code ("one" .. "ten", "other") to a
readable category; it may come before or after the `annotations` list.
"""

from collections import Counter
from typing import BinaryIO, Iterator, Mapping

from .errors import SourceFormatError
from .jsonstream import iter_list_items, read_value
from .records import Annotation, SharedValues
from .vqav2 import _require, answers_in_id_order, checked_answer_type
from .vqav2 import iter_questions  # noqa: F401  (same question format as VQAv2)


def read_question_types(stream: BinaryIO, filename: str) -> dict[str, str]:
    question_types = read_value(stream, "question_types", filename)
    if question_types is None:
        return {}
    if not isinstance(question_types, dict):
        raise SourceFormatError(filename, "'question_types' must be an object mapping codes to names")
    return {str(code): str(name) for code, name in question_types.items()}


def iter_annotations(stream: BinaryIO, filename: str, question_types: Mapping[str, str]) -> Iterator[Annotation]:
    shared = SharedValues()
    for index, record in enumerate(iter_list_items(stream, "annotations", filename)):
        _require(record, ("question_id", "image_id", "answers"), filename, index)
        answers = answers_in_id_order(record, filename, shared)
        code = str(record.get("question_type", ""))
        yield Annotation(
            question_id=str(record["question_id"]),
            image_id=str(record["image_id"]),
            answer=majority_answer(answers),
            answers=answers,
            # The readable category; the code itself when the file's map lacks it.
            question_type=question_types.get(code, code),
            answer_type=checked_answer_type(record, filename),
        )


def majority_answer(answers: tuple[str, ...]) -> str:
    """The most frequent answer; on a tie, the one that occurs first (in answer_id order).

    Counter.most_common sorts stably, so equal counts keep first-insertion order.
    """
    return Counter(answers).most_common(1)[0][0]
