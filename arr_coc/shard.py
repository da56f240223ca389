"""One shard of the build: one source, one split, one part of its images (image digest modulo parts).

A shard streams its source's annotation files once, keeps the selected images of its part, then
reads, checks and emits them in ascending digest order. Every item that does not reach a row is
counted with its reason.
"""

import contextlib
import logging
from dataclasses import dataclass
from typing import Iterator, Optional

from . import coco, gqa, okvqa, vqav2
from .collect import collect_coco, collect_gqa, collect_vqa, new_image_items
from .conversations import caption_rows, vqa_rows
from .errors import SourceFormatError
from .images import CheckedImage, ImageStore
from .remote import STREAM_BLOCK_SIZE, open_zip
from .selection import ImageSelector
from .sources import coco_file_name, gqa_file_name
from .stats import ShardStats

logger = logging.getLogger(__name__)

NO_ANNOTATION = "no_annotation"


@dataclass(frozen=True)
class ShardSpec:
    """Everything a shard needs; plain data so it pickles into `num_proc` workers."""

    index: int  # position in the split's shard list: fixes the row order across shards
    source: str
    split: str
    original_split: str
    part: int
    num_parts: int
    cap: Optional[int]
    questions: tuple[str, str]  # (archive location, member): VQA questions, GQA questions, COCO captions
    annotations: Optional[tuple[str, str]]  # VQA/OK-VQA annotations
    image_archive: Optional[str]  # zip location, or None when images come one by one from a URL
    image_folder: str
    image_url_template: Optional[str] = None


@dataclass(frozen=True)
class RowOptions:
    vqa_prompt_suffix: str
    turns_per_example: Optional[int]
    gqa_answer_style: str
    captions_per_image: int
    seed: int


@contextlib.contextmanager
def open_member(location: str, member: str, find_member=None):
    """Stream one JSON member out of a (local or remote) zip archive."""
    with open_zip(location, block_size=STREAM_BLOCK_SIZE) as archive:
        name = find_member(archive.namelist(), member, location) if find_member else member
        try:
            stream = archive.open(name)
        except KeyError:
            raise SourceFormatError(location, f"has no member {member}") from None
        with stream:
            yield stream, f"{location}:{name}"


def generate_shard(spec: ShardSpec, options: RowOptions, stats: ShardStats) -> Iterator[dict]:
    selector = ImageSelector(spec.source, spec.cap, spec.part, spec.num_parts, new_image_items)
    stats.items_total = _collect(spec, options, selector)
    store = ImageStore(spec.image_archive, spec.image_folder, spec.image_url_template)
    try:
        for entry in selector.entries():
            yield from _image_rows(spec, options, entry, store, stats)
    finally:
        store.close()


def _collect(spec: ShardSpec, options: RowOptions, selector: ImageSelector) -> int:
    logger.info("%s %s part %d/%d: reading %s", spec.source, spec.split, spec.part + 1, spec.num_parts, spec.questions[1])
    if spec.source == "gqa":
        with open_member(*spec.questions, find_member=gqa.find_question_member) as (stream, name):
            return collect_gqa(gqa.iter_questions(stream, name, options.gqa_answer_style), selector)
    if spec.source == "coco":
        # Two streaming passes over the same member: `images` and `annotations` are separate lists.
        with open_member(*spec.questions) as (images, name), open_member(*spec.questions) as (captions, _):
            return collect_coco(coco.iter_images(images, name), coco.iter_captions(captions, name), selector)
    question_types = {}
    if spec.source == "okvqa":
        with open_member(*spec.annotations) as (stream, name):
            question_types = okvqa.read_question_types(stream, name)
    with open_member(*spec.questions) as (questions, questions_name):
        with open_member(*spec.annotations) as (annotations, annotations_name):
            if spec.source == "okvqa":
                answers = okvqa.iter_annotations(annotations, annotations_name, question_types)
            else:
                answers = vqav2.iter_annotations(annotations, annotations_name)
            return collect_vqa(vqav2.iter_questions(questions, questions_name), answers, selector, annotations_name)


def _image_rows(spec: ShardSpec, options: RowOptions, entry, store: ImageStore, stats: ShardStats) -> Iterator[dict]:
    if spec.source == "coco":
        # COCO items are images: an image without captions is one `no_annotation` item.
        items, unanswered = (1, 0) if entry.captions else (0, 1)
    else:
        items, unanswered = len(entry.qas), len(entry.unanswered)
    stats.items_selected += items + unanswered
    stats.skip(NO_ANNOTATION, unanswered)
    if not items:
        return
    image = store.fetch(entry.file_name or _file_name(spec, entry.image_id))
    if not isinstance(image, CheckedImage):
        stats.skip(image, items)
        return
    if spec.source == "coco":
        rows = caption_rows(
            spec.original_split, entry.image_id, image, entry.captions, options.captions_per_image, options.seed
        )
    else:
        rows = vqa_rows(
            spec.source,
            spec.original_split,
            entry.image_id,
            image,
            entry.qas,
            options.vqa_prompt_suffix,
            options.turns_per_example,
        )
    stats.items_written += items
    for row in rows:
        stats.rows_written += 1
        yield row


def _file_name(spec: ShardSpec, image_id: str) -> str:
    if spec.source == "gqa":
        return gqa_file_name(image_id)
    return coco_file_name(spec.original_split, int(image_id))
