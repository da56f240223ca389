"""Image bytes: read them unchanged, size them from the header, and catch corrupt files.

Bytes are never decoded and re-encoded. A header read gives width/height but does not notice a
truncated file, so every image is also decoded once at reduced size (PIL `draft`: libjpeg's DCT
scaling, several times cheaper than a full decode but it still walks all the entropy-coded data).
"""

import io
import posixpath
import zipfile
import zlib
from dataclasses import dataclass
from typing import Optional

from PIL import Image

from .remote import open_zip, read_url

MISSING_IMAGE = "missing_image"
CORRUPT_IMAGE = "corrupt_image"
# Smallest edge the check decodes to; JPEG DCT scaling goes down to 1/8.
_DRAFT_SCALE = 8


@dataclass(frozen=True)
class CheckedImage:
    data: bytes
    file_name: str
    width: int
    height: int


class CorruptImage(Exception):
    pass


def inspect_image(data: bytes) -> tuple[int, int]:
    """(width, height) from the header, after a reduced-size decode proves the data is whole."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            width, height = image.size
            if image.format == "JPEG":
                image.draft(image.mode, (max(1, width // _DRAFT_SCALE), max(1, height // _DRAFT_SCALE)))
            image.load()
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
        raise CorruptImage(str(error)) from None
    return width, height


class ImageStore:
    """The images of one source split: members of a zip archive, or single files under a base URL."""

    def __init__(self, archive: Optional[str], folder: str, url_template: Optional[str] = None):
        self.archive = archive
        self.folder = folder
        self.url_template = url_template
        self._zip: Optional[zipfile.ZipFile] = None

    def read(self, file_name: str) -> Optional[bytes]:
        """The file's bytes, or None if the source has no such image."""
        if self.url_template is not None:
            try:
                return read_url(self.url_template.format(folder=self.folder, file_name=file_name))
            except FileNotFoundError:
                return None
        if self._zip is None:
            self._zip = open_zip(self.archive)
        try:
            return self._zip.read(posixpath.join(self.folder, file_name))
        except KeyError:
            return None
        except (zipfile.BadZipFile, EOFError, zlib.error):
            # A damaged member (bad CRC, cut-off deflate stream) is an unreadable image, not a build failure.
            return b""

    def fetch(self, file_name: str) -> CheckedImage | str:
        """A checked image, or the skip reason (`missing_image` / `corrupt_image`)."""
        data = self.read(file_name)
        if data is None:
            return MISSING_IMAGE
        try:
            width, height = inspect_image(data)
        except CorruptImage:
            return CORRUPT_IMAGE
        return CheckedImage(data=data, file_name=file_name, width=width, height=height)

    def close(self) -> None:
        if self._zip is not None:
            self._zip.close()
            self._zip = None
