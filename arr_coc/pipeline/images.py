"""Image bytes: read them unchanged, size them from the header, catch corrupt files, hash them.

Bytes are never decoded and re-encoded. A header read gives width/height but does not notice a
truncated file, so every image is also decoded once at reduced size (PIL `draft`: libjpeg's DCT
scaling, cheaper than a full decode but it still walks all the entropy-coded data). That one decode
is the perceptual hash's input too (`phash`: grayscale at 1/4 scale): one decode for both costs
about 1.6 ms per 640x480 photo against 1.25 ms for the check alone at 1/8 scale and 2.8 ms for
the check plus a separate decode for the hash.
Sources that share images remember each image's outcome by content (`CheckMemo`).
"""

import hashlib
import io
import posixpath
import warnings
import zipfile
import zlib
from dataclasses import dataclass
from typing import Optional

from PIL import Image

from ..network.remote import ArchiveZipFile, network_failure_behind, open_zip, read_url
from ..network.retry import NetworkError, NotThere
from ..process.errors import SourceFormatError
from .phash import draft_for_hash, perceptual_hash

MISSING_IMAGE = "missing_image"
CORRUPT_IMAGE = "corrupt_image"
# An image file larger than this is counted as `corrupt_image` without being read: the largest COCO
# 2014 and GQA images are a few MB, while a damaged or hostile zip member may inflate to gigabytes
# (a 240 kB member of 200 MB peaked at 2.2 GB RSS and made a 200 MB row).
MAX_IMAGE_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True)
class CheckedImage:
    data: bytes
    file_name: str
    width: int
    height: int
    phash: str  # metadata.phash


class CorruptImage(Exception):
    pass


def inspect_image(data: bytes) -> tuple[int, int, str]:
    """(width, height, phash): the size from the header, after the hash's reduced-size decode proves
    the data is whole."""
    try:
        with warnings.catch_warnings():
            # Between 1x and 2x MAX_IMAGE_PIXELS PIL only warns: a header claiming 10000x10000 on a
            # 16x16 JPEG would pass with that size. Here the warning is an error, for this call only.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as image:
                width, height = image.size
                draft_for_hash(image)
                image.load()
                return width, height, perceptual_hash(image)
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise CorruptImage(str(error)) from None


class CheckMemo:
    """Outcomes of `inspect_image` by content: VQAv2, OK-VQA and COCO captions share the COCO 2014
    images, so a build meets most of them two or three times and would decode each every time.

    A zip member is known by its archive, name, size and CRC-32 (zipfile has checked the bytes read
    against that CRC); other bytes by their SHA-1 (about 0.07 ms for a 100 kB JPEG, against about
    1.6 ms for the decode and hash). So a hit is the answer the decode would give those bytes.
    Bounded: past `max_entries` images it stops remembering (COCO 2014 has about 124k).
    """

    def __init__(self, max_entries: int = 300_000):
        self.max_entries = max_entries
        self._outcomes: dict[object, Optional[tuple[int, int, str]]] = {}

    def inspect(self, data: bytes, identity: Optional[tuple] = None) -> tuple[int, int, str]:
        key = identity if identity is not None else hashlib.sha1(data).digest()
        if key in self._outcomes:
            outcome = self._outcomes[key]
            if outcome is None:
                raise CorruptImage("seen before")
            return outcome
        try:
            outcome = inspect_image(data)
        except CorruptImage:
            self._remember(key, None)
            raise
        self._remember(key, outcome)
        return outcome

    def _remember(self, key: bytes, outcome: Optional[tuple[int, int, str]]) -> None:
        if len(self._outcomes) < self.max_entries:
            self._outcomes[key] = outcome


# Per process: every ImageStore of the build that asks for it shares one memo.
_CHECK_MEMO = CheckMemo()


class ImageStore:
    """The images of one source split: members of a zip archive, or single files under a base URL."""

    def __init__(
        self, archive: Optional[str], folder: str, url_template: Optional[str] = None, remember_checks: bool = False,
        pin: Optional[dict] = None,
    ):  # fmt: skip
        self.archive = archive
        self.folder = folder
        self.url_template = url_template
        self.pin = pin  # a remote archive: the version the build reads (arr_coc.network.versions)
        self._zip: Optional[zipfile.ZipFile] = None
        self._remember_checks = remember_checks

    def member_names(self) -> list[str]:
        """Every member name of the archive (its central directory)."""
        return self._archive().namelist()

    def _archive(self) -> zipfile.ZipFile:
        if self._zip is None:
            self._zip = open_zip(self.archive, pin=self.pin)
        return self._zip

    def read(self, file_name: str) -> Optional[bytes]:
        """The file's bytes, or None if the source definitely has no such image.

        Only a real 404 of a per-image URL or a member absent from its archive is None (`missing_image`);
        any other network failure has been retried (`arr_coc.network.retry`) and raises NetworkError.
        """
        return self._read(file_name)[0]

    def _read(self, file_name: str) -> tuple[Optional[bytes], Optional[tuple]]:
        """(bytes or None, the member's identity for CheckMemo: None for a URL or unread bytes)."""
        if self.url_template is not None:
            try:
                data = read_url(self.url_template.format(folder=self.folder, file_name=file_name))
            except NotThere:
                return None, None
            return (data if len(data) <= MAX_IMAGE_BYTES else b""), None  # too large: corrupt, as below
        archive = self._archive()
        try:
            info = archive.getinfo(posixpath.join(self.folder, file_name))
            if info.file_size > MAX_IMAGE_BYTES:
                return b"", None  # counted as corrupt_image, never inflated
            with archive.open(info) as member:
                # Never more than the directory declares (a member may inflate past a false size);
                # reading to the end makes zipfile check the bytes against the directory's CRC-32.
                data = member.read(info.file_size)
            return data, (self.archive, info.filename, info.file_size, info.CRC)
        except KeyError:
            return None, None
        except (zipfile.BadZipFile, EOFError, zlib.error, NotImplementedError, RuntimeError) as error:
            network = network_failure_behind(error)
            if network is not None:
                raise network from None  # the network failed, not the image
            # A damaged member (bad CRC, cut-off deflate stream, a compression method or encryption
            # flag bit-flipped into its header) is an unreadable image, not a build failure, unless
            # the archive changed on the server (then bytes at the old offsets mean nothing).
            self.verify_unchanged()
            return b"", None

    def fetch(self, file_name: str) -> CheckedImage | str:
        """A checked image, or the skip reason (`missing_image` / `corrupt_image`)."""
        try:
            data, identity = self._read(file_name)
        except NetworkError:
            raise  # already one line naming the URL and byte range
        except OSError as error:
            # An I/O error says nothing of where (a damaged directory entry gives "[Errno 22]
            # Invalid argument"): the build fails with a line naming the archive and the image.
            where = self.archive or self.url_template.format(folder=self.folder, file_name=file_name)
            raise SourceFormatError(where, f"cannot read image {posixpath.join(self.folder, file_name)} ({error})") from None
        if data is None:
            return MISSING_IMAGE
        try:
            width, height, phash = _CHECK_MEMO.inspect(data, identity) if self._remember_checks else inspect_image(data)
        except CorruptImage:
            self.verify_unchanged()
            return CORRUPT_IMAGE
        return CheckedImage(data=data, file_name=file_name, width=width, height=height, phash=phash)

    def verify_unchanged(self) -> None:
        """A remote archive: ChangedOnServer if the server no longer has the version read (one request)."""
        if isinstance(self._zip, ArchiveZipFile):
            self._zip.verify_unchanged()

    def close(self) -> None:
        if self._zip is not None:
            self._zip.close()
            self._zip = None
