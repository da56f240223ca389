"""COCO Captions 2014 (`annotations/captions_{train,val}2014.json` in annotations_trainval2014.zip).

`images` and `annotations` are independent lists: captions are in caption-id order, not grouped by
image, and caption ids have nothing to do with image ids. Raw captions carry newlines and runs of
spaces, so they are normalised.
"""

from typing import BinaryIO, Iterator

from ..process.errors import SourceFormatError
from .fields import blank, integer_id, text
from .jsonstream import iter_list_items
from .records import Caption
from .unique import UniqueIds, rewound


def iter_images(stream: BinaryIO, filename: str) -> Iterator[tuple[str, str]]:
    """Yield (image id as a decimal string, file_name)."""
    seen = UniqueIds(filename, "images", "image id")
    for index, record in enumerate(iter_list_items(stream, "images", filename)):
        record_id = f"images[{index}]"
        _require_object(record, filename, record_id)
        image_id = integer_id(record, "id", filename, record_id)
        seen.add(image_id)
        yield image_id, text(record, "file_name", filename, record_id)
    seen.check(lambda: _ids(stream, "images", filename))


def iter_captions(stream: BinaryIO, filename: str) -> Iterator[Caption]:
    seen = UniqueIds(filename, "annotations", "caption id")
    for index, record in enumerate(iter_list_items(stream, "annotations", filename)):
        record_id = f"annotations[{index}]"
        _require_object(record, filename, record_id)
        caption_id = integer_id(record, "id", filename, record_id)
        seen.add(caption_id)
        yield Caption(
            caption_id=int(caption_id),
            image_id=integer_id(record, "image_id", filename, record_id),
            text=_caption_text(record, filename, record_id),
        )
    seen.check(lambda: _ids(stream, "annotations", filename))


def _caption_text(record: dict, filename: str, record_id: str) -> str:
    """The normalised caption; a blank one is an error, like a null (it could become the assistant turn)."""
    raw = text(record, "caption", filename, record_id)
    caption = normalise_caption(raw)
    if not caption:
        raise blank(filename, "caption", raw, record_id)
    return caption


def _require_object(record, filename: str, record_id: str) -> None:
    if not isinstance(record, dict):
        raise SourceFormatError(filename, f"a record must be an object, got {type(record).__name__}", record_id)


def _ids(stream: BinaryIO, records: str, filename: str) -> Iterator[str]:
    """Every record's id again, for the duplicate check's second read."""
    for record in iter_list_items(rewound(stream), records, filename):
        yield str(record["id"])


def normalise_caption(text: str) -> str:
    """Whitespace runs (newlines included) become one space; ends stripped."""
    return " ".join(text.split())
