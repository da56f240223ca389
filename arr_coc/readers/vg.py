"""Visual Genome's image metadata (`image_data.json` in image_data.json.zip): the GQA -> COCO id map.

GQA train/val imageIds are Visual Genome image ids, and about half of Visual Genome's images are
COCO 2014 photos; only this file says which (`coco_id`, null for the others). It is one top-level
JSON list of `{width, url, height, image_id, coco_id, flickr_id}`, read record by record. Some
readers (the official driver) write `id` instead of `image_id`: both are accepted.
"""

from typing import BinaryIO, Iterator, Optional

from ..process.errors import SourceFormatError
from .jsonstream import iter_array_items

ARCHIVE = "image_data.json.zip"
MEMBER = "image_data.json"


def iter_coco_ids(stream: BinaryIO, filename: str) -> Iterator[tuple[str, Optional[str]]]:
    """Yield (Visual Genome image id, COCO id or None), both as decimal strings, in file order."""
    for index, record in enumerate(iter_array_items(stream, filename)):
        if not isinstance(record, dict):
            raise SourceFormatError(filename, "an image record must be an object", f"[{index}]")
        key = "image_id" if "image_id" in record else "id"
        image_id = _decimal(record.get(key))
        if image_id is None:
            raise SourceFormatError(filename, "an image needs an integer 'image_id' (or 'id')", f"[{index}]")
        if "coco_id" not in record:
            # Treating a missing field as null would silently turn leakage control off for the image.
            raise SourceFormatError(filename, "an image needs 'coco_id' (null when it is not a COCO photo)", image_id)
        coco_id = record["coco_id"]
        if coco_id is not None:
            coco_id = _decimal(coco_id)
            if coco_id is None:
                raise SourceFormatError(filename, f"'coco_id' must be an integer or null, got {record['coco_id']!r}", image_id)
        yield image_id, coco_id


def read_coco_ids(stream: BinaryIO, filename: str) -> dict[str, Optional[str]]:
    """{Visual Genome image id: COCO id or None}; an image listed twice must agree with itself."""
    coco_ids: dict[str, Optional[str]] = {}
    for image_id, coco_id in iter_coco_ids(stream, filename):
        if coco_ids.get(image_id, coco_id) != coco_id:
            raise SourceFormatError(
                filename, f"listed twice with different coco_id ({coco_ids[image_id]} and {coco_id})", image_id
            )
        coco_ids[image_id] = coco_id
    return coco_ids


def _decimal(value) -> Optional[str]:
    """An id as the decimal string the rows carry; None when it is not a non-negative integer."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int) and value >= 0:
        return str(value)
    if isinstance(value, str) and value.isascii() and value.isdigit():
        return str(int(value))
    return None
