"""GQA 1.2 balanced question files: a dict keyed by question id (a string with leading zeros).

questions1.2.zip holds many files (train_all_questions/*, *_all_questions.json, testdev, test,
challenge, submission); only `<split>_balanced_questions.json` is read. Third-party code puts it at
the zip root, big_vision implies a `questions1.2/` folder: both are accepted.
"""

import posixpath
from typing import BinaryIO, Iterator

from ..process.errors import SourceFormatError
from .fields import nonblank_text, optional_object, optional_text, text
from .jsonstream import iter_dict_items
from .records import QA, SharedValues
from .unique import UniqueIds, rewound

ANSWER_STYLES = ("short", "full")


def find_question_member(member_names: list[str], base_name: str, archive: str) -> str:
    """The archive member called `base_name`, at the root or in one folder; decoys are ignored."""
    matches = [name for name in member_names if posixpath.basename(name) == base_name and name.count("/") <= 1]
    if not matches:
        raise SourceFormatError(archive, f"no member named {base_name} (members: {sorted(member_names)[:8]} ...)")
    if len(matches) > 1:
        raise SourceFormatError(archive, f"several members named {base_name}: {matches}")
    return matches[0]


def iter_questions(stream: BinaryIO, filename: str, answer_style: str = "short") -> Iterator[tuple[str, QA | str]]:
    """Yield (imageId, QA), or (imageId, question id) when the record has no answer."""
    if answer_style not in ANSWER_STYLES:
        raise ValueError(f"gqa_answer_style must be one of {ANSWER_STYLES}, got {answer_style!r}")
    shared = SharedValues()
    seen = UniqueIds(filename, "questions", "question id")
    for question_id, record in iter_dict_items(stream, filename):
        seen.add(question_id)
        if not isinstance(record, dict):
            raise SourceFormatError(filename, f"a question must be an object, got {type(record).__name__}", question_id)
        image_id = shared(text(record, "imageId", filename, question_id))
        question = nonblank_text(record, "question", filename, question_id)
        if "answer" not in record:  # test and challenge records carry no answer
            yield image_id, question_id
            continue
        short = shared(nonblank_text(record, "answer", filename, question_id))
        assistant = short if answer_style == "short" else _full_answer(record, question_id, filename)
        yield image_id, QA(
            question_id=question_id,
            question=question,
            answer=assistant,
            answers=shared((short,)),
            question_type=shared(_detailed_type(record, question_id, filename)),
            answer_type=answer_type(short),
        )
    seen.check(lambda: (question_id for question_id, _ in iter_dict_items(rewound(stream), filename)))


def answer_type(short_answer: str) -> str:
    """GQA has no answer types; derive the VQA ones from the short answer."""
    if short_answer in ("yes", "no"):
        return "yes/no"
    if short_answer.isascii() and short_answer.isdigit():
        return "number"
    return "other"


def _full_answer(record: dict, question_id: str, filename: str) -> str:
    if "fullAnswer" not in record:
        raise SourceFormatError(filename, "gqa_answer_style='full' needs 'fullAnswer'", question_id)
    return nonblank_text(record, "fullAnswer", filename, question_id)


def _detailed_type(record: dict, question_id: str, filename: str) -> str:
    types = optional_object(record, "types", filename, question_id)
    return optional_text(types, "detailed", filename, question_id)
