"""The compact records the readers keep: only the fields a row needs."""

from dataclasses import dataclass, field
from typing import Optional


@dataclass(slots=True, frozen=True)
class Question:
    """A VQA question before its annotation is joined (VQAv2, OK-VQA)."""

    question_id: str
    image_id: str
    question: str


@dataclass(slots=True, frozen=True)
class Annotation:
    """The answer side of a VQA question (VQAv2, OK-VQA)."""

    question_id: str
    image_id: str
    answer: str  # what the assistant says
    answers: tuple[str, ...]  # every reference answer, in answer_id order
    question_type: str
    answer_type: str


@dataclass(slots=True, frozen=True)
class QA:
    """A question with its answer: one user/assistant turn pair."""

    question_id: str
    question: str
    answer: str
    answers: tuple[str, ...]
    question_type: str
    answer_type: str
    # VQAv2/OK-VQA: how many of `answers` agree with `answer` and its official VQA accuracy
    # (arr_coc/pipeline/agreement.py); None for GQA's single reference answer.
    answer_count: Optional[int] = None
    answer_score: Optional[float] = None


@dataclass(slots=True, frozen=True)
class Caption:
    caption_id: int
    image_id: str
    text: str  # normalised


@dataclass(slots=True)
class ImageItems:
    """Everything one selected image carries into rows, and what it cannot carry."""

    image_id: str
    file_name: Optional[str] = None
    questions: dict = field(default_factory=dict)  # question_id -> question text, awaiting its annotation
    qas: list = field(default_factory=list)  # list[QA]
    unanswered: list = field(default_factory=list)  # question ids without annotation, or the reverse
    captions: list = field(default_factory=list)  # list[Caption]


class SharedValues:
    """One object per distinct value, for the fields that repeat across hundreds of thousands of
    kept records (answers, answer lists, question types, image ids). A build holds every selected
    question until its image's row is written, so sharing them cuts that memory by about 40 %
    (GQA) to 60 % (VQAv2's ten answers per question); the values themselves are unchanged."""

    def __init__(self):
        self._values: dict = {}

    def __call__(self, value):
        return self._values.setdefault(value, value)

