"""Rows: one image of one source with its questions as a multi-turn conversation, or its captions.

DESIGN.md, "How each source becomes rows": questions in ascending question id order, cut into
chunks of at most `turns_per_example` turn pairs; the VQA prompt suffix on every user turn; caption
rows pick an instruction and a caption deterministically from (seed, image id).
"""

import functools
import random
from typing import Iterator, Optional

import numpy as np

from ..readers.records import QA, Caption
from ..schema import ANSWER_TYPES, row_id
from .images import CheckedImage

CAPTION_INSTRUCTIONS = (
    "Describe this image in one sentence.",
    "Write a short caption for this image.",
    "What is shown in this picture? Answer in one sentence.",
    "Give a brief description of the image.",
    "Summarize the content of this image in a sentence.",
    "Provide a one-sentence caption for the photo.",
    "What does this image show? Describe it briefly.",
    "Caption this image.",
)


ANSWER_TYPE_INDEX = {name: index for index, name in enumerate(ANSWER_TYPES)}


def question_order(question_id: str) -> tuple:
    """Ascending question id: numerically for digit strings (GQA keeps its leading zeros as text)."""
    if question_id.isdigit():
        return (0, int(question_id), question_id)
    return (1, 0, question_id)


def vqa_rows(
    source: str,
    original_split: str,
    image_id: str,
    image: CheckedImage,
    qas: list[QA],
    suffix: str,
    turns_per_example: Optional[int],
    coco_id: Optional[str],
) -> Iterator[dict]:
    """`coco_id`: the COCO 2014 id of the photo (image_id for COCO-based sources; GQA: from Visual Genome)."""
    ordered = sorted(qas, key=lambda qa: question_order(qa.question_id))
    size = turns_per_example or len(ordered)
    for chunk, start in enumerate(range(0, len(ordered), size)):
        part = ordered[start : start + size]
        conversations = []
        for qa in part:
            conversations.append({"role": "user", "content": qa.question + suffix})
            conversations.append({"role": "assistant", "content": qa.answer})
        qa_metadata = [
            {
                "question_id": qa.question_id,
                "question_type": qa.question_type,
                # The ClassLabel index rather than its name: datasets then finds the first element of
                # the list already encoded and keeps the list as it is, instead of re-encoding every
                # element (about half of its per-row encoding time for a GQA image's 13 questions).
                "answer_type": ANSWER_TYPE_INDEX[qa.answer_type],
                "answers": list(qa.answers),
                "answer_count": qa.answer_count,
                "answer_score": None if qa.answer_score is None else _stored_score(qa.answer_score),
            }
            for qa in part
        ]
        yield _row(source, "vqa", original_split, image_id, coco_id, chunk, image, conversations, qa_metadata, [])


@functools.lru_cache(maxsize=None)  # a handful of values: 0.0, 0.3, 0.6, 0.9, 1.0 with 10 references
def _stored_score(score: float) -> float:
    """The score as its float32 column holds it (0.9 -> 0.8999999762): datasets does not round a float
    it streams straight from the builder, and a streamed row must equal the stored one."""
    return float(np.float32(score))


def caption_rows(
    original_split: str, image_id: str, image: CheckedImage, captions: list[Caption], captions_per_image: int, seed: int
) -> Iterator[dict]:
    texts = [caption.text for caption in sorted(captions, key=lambda caption: caption.caption_id)]
    # A string seed is hashed with SHA-512 by `random`, so the choice is the same on every machine.
    rng = random.Random(f"{seed}:{image_id}")
    picks = rng.sample(range(len(texts)), min(captions_per_image, len(texts)))
    for chunk, pick in enumerate(picks):
        conversations = [
            {"role": "user", "content": rng.choice(CAPTION_INSTRUCTIONS)},
            {"role": "assistant", "content": texts[pick]},
        ]
        yield _row("coco", "caption", original_split, image_id, image_id, chunk, image, conversations, [], texts)


def _row(source, task, original_split, image_id, coco_id, chunk, image: CheckedImage, conversations, qa, captions) -> dict:
    return {
        "id": row_id(source, original_split, image_id, chunk),
        # bytes + file name: the Image feature stores them as they are, with no re-encoding.
        "image": {"bytes": image.data, "path": image.file_name},
        "conversations": conversations,
        "source": source,
        "task": task,
        "metadata": {
            "image_id": image_id,
            "coco_id": coco_id,
            "width": image.width,
            "height": image.height,
            "original_split": original_split,
            "qa": qa,
            "captions": captions,
            "phash": image.phash,
        },
    }
