"""Opening source archives that may be local files or http(s) URLs.

Zip archives are opened for random access: a local file directly, a URL through HTTP range
requests (fsspec), so that a member costs a few range reads and a 20 GB image archive is never
downloaded to read a few hundred images.
"""

import os
import zipfile
from typing import BinaryIO

from .errors import SourceFormatError

# Small blocks: an image member is ~50-150 kB, and a bigger readahead would fetch neighbours we do
# not need. Annotation members are read sequentially, where a larger block saves round trips.
IMAGE_BLOCK_SIZE = 256 * 1024
STREAM_BLOCK_SIZE = 8 * 1024 * 1024


def is_url(location: str) -> bool:
    return location.startswith(("http://", "https://"))


def join_location(base: str, name: str) -> str:
    if is_url(base):
        return f"{base.rstrip('/')}/{name}"
    return os.path.join(base, name)


def open_binary(location: str, block_size: int) -> BinaryIO:
    """A seekable binary file for a local path or an http(s) URL."""
    if not is_url(location):
        return open(location, "rb")
    import fsspec  # only needed for remote sources

    fs = fsspec.filesystem("http")
    try:
        handle = fs.open(location, "rb", block_size=block_size, cache_type="readahead")
    except FileNotFoundError:
        raise FileNotFoundError(f"{location}: not found on the server") from None
    if not handle.seekable():
        raise SourceFormatError(
            location, "the server did not report a size or refused range requests; a zip archive needs HTTP Range support"
        )
    return handle


def open_zip(location: str, block_size: int = IMAGE_BLOCK_SIZE) -> zipfile.ZipFile:
    handle = open_binary(location, block_size)
    try:
        return zipfile.ZipFile(handle)
    except zipfile.BadZipFile as error:
        handle.close()
        raise SourceFormatError(location, f"not a readable zip archive ({error})") from None
    except ValueError as error:  # fsspec: the server ignored the Range header
        handle.close()
        raise SourceFormatError(location, f"cannot read the zip directory by HTTP range requests ({error})") from None


def read_url(url: str) -> bytes:
    """A whole small file (one image) from a URL; FileNotFoundError when the server has none."""
    import fsspec

    with fsspec.open(url, "rb") as handle:
        return handle.read()
