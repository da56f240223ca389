"""COCO Captions 2014 (`annotations/captions_{train,val}2014.json` in annotations_trainval2014.zip).

`images` and `annotations` are independent lists: captions are in caption-id order, not grouped by
image, and caption ids have nothing to do with image ids. Raw captions carry newlines and runs of
spaces, so they are normalised.
"""

from typing import BinaryIO, Iterator

from .errors import SourceFormatError
from .jsonstream import iter_list_items
from .records import Caption


def iter_images(stream: BinaryIO, filename: str) -> Iterator[tuple[str, str]]:
    """Yield (image id as a decimal string, file_name)."""
    for index, record in enumerate(iter_list_items(stream, "images", filename)):
        if not isinstance(record, dict) or "id" not in record or "file_name" not in record:
            raise SourceFormatError(filename, "an image needs 'id' and 'file_name'", f"images[{index}]")
        yield str(record["id"]), str(record["file_name"])


def iter_captions(stream: BinaryIO, filename: str) -> Iterator[Caption]:
    for index, record in enumerate(iter_list_items(stream, "annotations", filename)):
        if not isinstance(record, dict) or not {"id", "image_id", "caption"} <= record.keys():
            raise SourceFormatError(filename, "a caption needs 'id', 'image_id' and 'caption'", f"annotations[{index}]")
        if not isinstance(record["caption"], str):
            raise SourceFormatError(filename, "'caption' must be a string", record["id"])
        yield Caption(caption_id=int(record["id"]), image_id=str(record["image_id"]), text=normalise_caption(record["caption"]))


def normalise_caption(text: str) -> str:
    """Whitespace runs (newlines included) become one space; ends stripped."""
    return " ".join(text.split())
