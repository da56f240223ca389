"""One shard of the build: one source, one split, one part of its images (image digest modulo parts).

A shard streams its source's annotation files once, keeps the selected images of its part, then
reads, checks and emits them in ascending digest order. Consecutive parts of one source that run in
the same process share that one read (`generate_parts`). Every item that does not reach a row is
counted with its reason.
"""

import contextlib
import gc
import logging
import posixpath
from collections import Counter
from dataclasses import dataclass, field
from typing import Iterator, Optional, Sequence

from ..network.remote import STREAM_BLOCK_SIZE, open_archive_member, open_zip
from ..network.retry import NetworkError
from ..network.versions import ChangedOnServer
from ..process.errors import SourceFormatError
from ..readers import coco, gqa, okvqa, vqav2
from ..readers.records import QA
from ..readers.sources import coco_file_name, gqa_file_name
from .agreement import AGREEMENT_SOURCES, LOW_AGREEMENT
from .collect import collect_coco, collect_gqa, collect_vqa, new_image_items
from .conversations import caption_rows, vqa_rows
from .decontamination import GqaPhotos
from .images import CheckedImage, ImageStore
from .selection import ImageSelector
from .stats import ShardStats

logger = logging.getLogger(__name__)

NO_ANNOTATION = "no_annotation"
# Sources whose images are the same COCO 2014 files: a build meets each such image up to three times.
SHARED_IMAGES = ("vqav2", "okvqa", "coco")


@dataclass(frozen=True)
class ShardSpec:
    """Everything a shard needs; plain data so it pickles into `num_proc` workers."""

    index: int  # position in the split's shard list: fixes the row order across shards
    # Position in the config's order of sources, which names the shard's counts (stats.ShardStats.write): the
    # build's counts and near-duplicate audit read them in this order, whatever order the shards run in.
    counts_index: int
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
    # GQA only: each image's COCO id and the images that cross the split boundary (leakage control).
    # Read once per build and shared by every GQA shard of the split; never compared or hashed.
    gqa_photos: Optional[GqaPhotos] = field(default=None, compare=False)
    # Every file this build reads (remote archives read by range, cached downloads, local mirror files) ->
    # the validator the build pinned it to when it started (arr_coc.network.versions): every shard, in any
    # process, reads that one version.
    versions: dict = field(default_factory=dict, compare=False)


@dataclass(frozen=True)
class RowOptions:
    vqa_prompt_suffix: str
    turns_per_example: Optional[int]
    gqa_answer_style: str
    captions_per_image: int
    seed: int
    min_answer_score: float


@contextlib.contextmanager
def open_member(location: str, member: str, find_member=None, pin: Optional[dict] = None):
    """Stream one JSON member out of a (local or remote) zip archive; a remote one is read as the
    pinned version, and a read that fails is blamed on the file only once the server says it has
    not changed meanwhile."""
    with open_zip(location, block_size=STREAM_BLOCK_SIZE, pin=pin) as archive:
        name = find_member(archive.namelist(), member, location) if find_member else member
        try:
            with open_archive_member(archive, location, name) as stream:
                yield stream, f"{location}:{name}"
        except (SourceFormatError, NetworkError) as error:
            if archive.version is not None and not isinstance(error, ChangedOnServer):
                archive.version.verify_unchanged_or_raise(error)
            raise
        archive.verify_unchanged()


def generate_parts(specs: Sequence[ShardSpec], options: RowOptions, stats: Sequence[ShardStats]) -> Iterator[tuple[int, dict]]:
    """The rows of several parts of one source and split, part after part: (position in `specs`, row).

    The source's annotation files are read once for all the parts (instead of once per part), and
    each part's rows are exactly those it gives when generated alone, in the same order.
    """
    first = specs[0]
    if len({(spec.source, spec.split) for spec in specs}) != 1 or len({spec.part for spec in specs}) != len(specs):
        raise ValueError("generate_parts needs distinct parts of one source and split")
    selector = ImageSelector(first.source, first.cap, [spec.part for spec in specs], first.num_parts, new_image_items)
    with _cyclic_gc_paused():
        items_total = _collect(first, options, selector, [spec.part for spec in specs])
    store = ImageStore(
        first.image_archive, first.image_folder, first.image_url_template, remember_checks=first.source in SHARED_IMAGES,
        pin=first.versions.get(first.image_archive),
    )  # fmt: skip
    try:
        for position, (spec, shard_stats) in enumerate(zip(specs, stats)):
            shard_stats.items_total = items_total
            for entry in selector.take(spec.part):
                for row in _image_rows(spec, options, entry, store, shard_stats):
                    yield position, row
        store.verify_unchanged()  # what these parts read and skipped is of the version the build pinned
    finally:
        store.close()


@contextlib.contextmanager
def _cyclic_gc_paused():
    """Reading the annotations keeps hundreds of thousands of small acyclic records alive (GQA: one
    per question); the cyclic collector would re-scan that growing heap again and again (about 10 %
    of the phase) and could free nothing. Reference counting still frees every temporary."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _collect(spec: ShardSpec, options: RowOptions, selector: ImageSelector, parts: Sequence[int]) -> int:
    logger.info(
        "%s %s part%s %s of %d: reading %s",
        spec.source,
        spec.split,
        "s" if len(parts) > 1 else "",
        ", ".join(str(part + 1) for part in parts),
        spec.num_parts,
        spec.questions[1],
    )
    questions_pin, annotations_pin = _pinned(spec, spec.questions), _pinned(spec, spec.annotations)
    if spec.source == "gqa":
        with open_member(*spec.questions, find_member=gqa.find_question_member, pin=questions_pin) as (stream, name):
            return collect_gqa(_mapped_only(gqa.iter_questions(stream, name, options.gqa_answer_style), spec, name), selector)
    if spec.source == "coco":
        # Two streaming passes over the same member: `images` and `annotations` are separate lists.
        with (
            open_member(*spec.questions, pin=questions_pin) as (images, name),
            open_member(*spec.questions, pin=questions_pin) as (captions, _),
        ):
            return collect_coco(coco.iter_images(images, name), coco.iter_captions(captions, name), selector)
    question_types = {}
    if spec.source == "okvqa":
        with open_member(*spec.annotations, pin=annotations_pin) as (stream, name):
            question_types = okvqa.read_question_types(stream, name)
    with open_member(*spec.questions, pin=questions_pin) as (questions, questions_name):
        with open_member(*spec.annotations, pin=annotations_pin) as (annotations, annotations_name):
            if spec.source == "okvqa":
                answers = okvqa.iter_annotations(annotations, annotations_name, question_types)
            else:
                answers = vqav2.iter_annotations(annotations, annotations_name)
            return collect_vqa(
                vqav2.iter_questions(questions, questions_name), answers, selector, annotations_name, questions_name
            )


def _mapped_only(questions, spec: ShardSpec, name: str):
    """GQA questions, each image id checked against Visual Genome's map when leakage control is on."""
    photos = spec.gqa_photos
    for image_id, qa in questions:
        if photos is not None:
            photos.check_listed(image_id, name)
        yield image_id, qa


def _pinned(spec: ShardSpec, member: Optional[tuple[str, str]]) -> Optional[dict]:
    return spec.versions.get(member[0]) if member is not None else None


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
    crossing = spec.gqa_photos.skip_reason(entry.image_id) if spec.gqa_photos is not None else None
    if spec.gqa_photos is not None and spec.gqa_photos.listed is not None and not entry.image_id.isdigit():
        stats.images_unchecked += 1  # an `n...` image: no map covers it (counted in the report)
    if crossing is not None:
        # Skipped before the image is fetched: a photo on the wrong side of the split boundary is not
        # downloaded at all. Its unanswered questions stay `no_annotation` above, as without the check.
        stats.skip_image(crossing, items)
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
        qas = entry.qas
        if spec.source in AGREEMENT_SOURCES:
            qas = _agreeing(entry.qas, options.min_answer_score, stats)
            items = len(qas)
        if not qas:
            rows = iter(())  # every turn dropped: no row (a COCO val2014 image read still goes to the audit below)
        else:
            rows = vqa_rows(
                spec.source,
                spec.original_split,
                entry.image_id,
                image,
                qas,
                options.vqa_prompt_suffix,
                options.turns_per_example,
                _coco_id(spec, entry.image_id),
            )
    stats.items_written += items
    written_rows = 0
    for row in rows:
        stats.rows_written += 1
        written_rows += 1
        yield row
    if written_rows or (spec.split == "validation" and spec.source in SHARED_IMAGES):
        # For the near-duplicate audit: the images written (all `items` of them reach its rows), and the COCO
        # val2014 images read (DESIGN.md); with their questions' answer counts, which leave the report's
        # histogram with the image if it is skipped.
        file = posixpath.join(spec.image_folder, image.file_name)
        answer_counts = _answer_counts(qas) if spec.source in AGREEMENT_SOURCES else {}
        stats.hashed.append([entry.image_id, file, image.phash, items, written_rows, answer_counts])


def _agreeing(qas: list[QA], min_score: float, stats: ShardStats) -> list[QA]:
    """The questions whose answer scores at least `min_score` (each QA carries its agreement: collect.py).

    The others are skipped as `low_agreement` before the turns are cut into rows; all of them count in
    the answer_counts histogram. After the image checks, so that the histogram holds exactly the
    written and `low_agreement` questions."""
    kept = [qa for qa in qas if qa.answer_score >= min_score]
    stats.skip(LOW_AGREEMENT, len(qas) - len(kept))
    stats.answer_counts.update(qa.answer_count for qa in qas)
    return kept


def _answer_counts(qas: list[QA]) -> dict:
    """{"answer_count": questions} of some questions, as the build report's histogram keys them."""
    return {str(count): questions for count, questions in sorted(Counter(qa.answer_count for qa in qas).items())}


def _coco_id(spec: ShardSpec, image_id: str) -> Optional[str]:
    """VQAv2 and OK-VQA images are COCO 2014 images; a GQA image's COCO id comes from Visual Genome."""
    if spec.source != "gqa":
        return image_id
    return spec.gqa_photos.coco_id(image_id) if spec.gqa_photos is not None else None


def _file_name(spec: ShardSpec, image_id: str) -> str:
    if spec.source == "gqa":
        return gqa_file_name(image_id)
    return coco_file_name(spec.original_split, int(image_id))
