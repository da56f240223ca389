"""Joining each source's records per selected image, in one streaming pass per file.

Each function feeds image ids to an `ImageSelector` as records arrive and keeps only the fields of
the images it selects for this shard part. Each returns `items_total`: the questions (VQA sources)
or images (COCO) the split's files hold, whether selected or not.
"""

from typing import Iterable

from ..process.errors import SourceFormatError
from ..readers.records import QA, Annotation, Caption, ImageItems, Question
from .agreement import answer_agreement
from .selection import ImageSelector


def collect_vqa(
    questions: Iterable[Question],
    annotations: Iterable[Annotation],
    selector: ImageSelector,
    annotations_file: str,
    questions_file: str = "the questions file",
) -> int:
    """VQAv2 and OK-VQA: questions and annotations are two lists joined on question_id.

    A question without annotation, or an annotation without question, is an item skipped as
    `no_annotation` (it is counted even though it cannot become a turn).
    """
    question_images: dict[str, str] = {}  # every question id -> its image id, to recognise orphans and mismatches
    for question in questions:
        question_images[question.question_id] = question.image_id
        entry = selector.offer(question.image_id)
        if entry is not None:
            entry.questions[question.question_id] = question.question
    items_total = len(question_images)
    for annotation in annotations:
        image_id = question_images.get(annotation.question_id)
        if image_id is None:
            items_total += 1
            entry = selector.offer(annotation.image_id)
            if entry is not None:
                entry.unanswered.append(annotation.question_id)
            continue
        if image_id != annotation.image_id:
            raise SourceFormatError(
                annotations_file,
                f"image_id {annotation.image_id} differs from the question's image_id {image_id} in {questions_file}",
                annotation.question_id,
            )
        entry = selector.get(image_id)
        if entry is None:
            continue
        text = entry.questions.pop(annotation.question_id, None)
        if text is None:
            continue  # a repeated annotation: its reader fails, naming both, at the end of the file
        agreement = answer_agreement(annotation.answer, annotation.answers)
        entry.qas.append(
            QA(
                question_id=annotation.question_id,
                question=text,
                answer=annotation.answer,
                answers=annotation.answers,
                question_type=annotation.question_type,
                answer_type=annotation.answer_type,
                answer_count=agreement.count,
                answer_score=agreement.score,
            )
        )
    for entry in selector.entries():
        entry.unanswered.extend(entry.questions)  # questions that no annotation answered
        entry.questions.clear()
    return items_total


def collect_gqa(records: Iterable[tuple[str, "QA | str"]], selector: ImageSelector) -> int:
    """GQA: each record is one question with its answer; a record without answer is `no_annotation`."""
    items_total = 0
    for image_id, qa in records:
        items_total += 1
        entry = selector.offer(image_id)
        if entry is None:
            continue
        if isinstance(qa, QA):
            entry.qas.append(qa)
        else:
            entry.unanswered.append(qa)
    return items_total


def collect_coco(images: Iterable[tuple[str, str]], captions: Iterable[Caption], selector: ImageSelector) -> int:
    """COCO captions: items are images, from the `images` list and from the captions' image ids.

    An image without any caption is `no_annotation`; a caption whose image is missing from the
    `images` list still names its image by id, so the COCO file-name rule finds the file.
    """
    listed: set[str] = set()
    for image_id, file_name in images:
        listed.add(image_id)
        entry = selector.offer(image_id)
        if entry is not None:
            entry.file_name = file_name
    unlisted: set[str] = set()
    for caption in captions:
        if caption.image_id not in listed:
            unlisted.add(caption.image_id)
        entry = selector.offer(caption.image_id)
        if entry is not None:
            entry.captions.append(caption)
    return len(listed) + len(unlisted)


def new_image_items(image_id: str) -> ImageItems:
    return ImageItems(image_id=image_id)
