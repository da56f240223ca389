"""Incremental JSON reading: records one at a time, never a whole annotation file in memory.

`json.load` of the real GQA train file (about 1 GB) or the VQAv2 train annotations (356 MB) costs
5-9x the file size in RAM; ijson's C backend streams the same files at about 12 MB peak.
"""

import zipfile
import zlib
from typing import Any, BinaryIO, Iterator, Optional

import ijson

from .errors import SourceFormatError


def iter_list_items(stream: BinaryIO, key: str, filename: str) -> Iterator[Any]:
    """Yield the items of the top-level list `key` (VQA `questions`, COCO `images`, ...)."""
    yield from _guarded(ijson.items(stream, f"{key}.item", use_float=True), filename)


def iter_dict_items(stream: BinaryIO, filename: str) -> Iterator[tuple[str, Any]]:
    """Yield (key, value) of a top-level object (GQA: question id -> question)."""
    yield from _guarded(ijson.kvitems(stream, "", use_float=True), filename)


def read_value(stream: BinaryIO, key: str, filename: str) -> Optional[Any]:
    """Return the top-level value `key` (e.g. OK-VQA's `question_types` map), or None if absent."""
    for value in _guarded(ijson.items(stream, key, use_float=True), filename):
        return value
    return None


def _guarded(items: Iterator[Any], filename: str) -> Iterator[Any]:
    # Turn parser and archive errors into one line naming the file and where it broke, instead of a
    # traceback from deep inside ijson or zipfile.
    count = 0
    try:
        for item in items:
            count += 1
            yield item
    except ijson.JSONError as error:
        raise SourceFormatError(filename, f"invalid or truncated JSON after {count} records ({error})") from None
    except (EOFError, OSError, zipfile.BadZipFile, zlib.error) as error:  # truncated or corrupt archive member
        raise SourceFormatError(filename, f"unreadable archive member after {count} records ({error})") from None
