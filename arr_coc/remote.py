"""Opening source archives that may be local files or http(s) URLs.

Zip archives are opened for random access: a local file directly, a URL through HTTP range
requests (fsspec), so that a 20 GB image archive is never downloaded to read a few hundred images.
Over HTTP, opening an archive costs a HEAD and three small range GETs (end record, zip64 locator,
central directory), and reading a member of up to `MAX_MEMBER_PREFETCH` bytes costs exactly one
range GET for that member's bytes. A server that ignores Range requests gets a clear error instead
of a silent download of the whole archive. Every request (the HEAD, each range GET, a single-image
GET) runs under the build's retry policy (`arr_coc.retry`); a give-up is a one-line NetworkError.
"""

import os
import zipfile
from typing import BinaryIO, Optional

from fsspec.caching import ReadAheadCache

from .errors import SourceFormatError
from .retry import NetworkError, NotThere, RetryPolicy, TruncatedBody, filesystem_for, with_retries

# Readahead for reads the member prefetch does not cover: the zip directory and members larger
# than MAX_MEMBER_PREFETCH. Annotation members are read sequentially, where big blocks save round trips.
IMAGE_BLOCK_SIZE = 256 * 1024
STREAM_BLOCK_SIZE = 8 * 1024 * 1024
# A member up to this size is fetched in one exact range request when it is opened (every image;
# small annotation files); bigger ones are streamed in readahead blocks instead of held in memory.
MAX_MEMBER_PREFETCH = 16 * 1024 * 1024
# The local file header's extra field may be longer than the central directory's copy (Info-ZIP
# writes fuller timestamps locally); the prefetched span covers that much difference.
_LOCAL_HEADER_SLACK = 1024
_LOCAL_HEADER_SIZE = 30  # fixed part of a zip local file header
_FSSPEC_NO_RANGE = "doesn't appear to support range requests"  # fsspec's ValueError for a 200 to a ranged GET


class RangeRequestsUnsupported(SourceFormatError):
    """An http(s) mirror whose server cannot serve byte ranges of an archive."""


def _no_range_reason(evidence: str) -> str:
    return (
        f"the HTTP server does not support Range requests ({evidence}); zip archives are read by range requests, "
        "so serve the mirror with a Range-capable server or use a local directory"
    )


def is_url(location: str) -> bool:
    return location.startswith(("http://", "https://"))


def join_location(base: str, name: str) -> str:
    if is_url(base):
        return f"{base.rstrip('/')}/{name}"
    return os.path.join(base, name)


def open_binary(location: str, block_size: int, policy: Optional[RetryPolicy] = None) -> BinaryIO:
    """A seekable binary file for a local path or an http(s) URL."""
    if not is_url(location):
        return open(location, "rb")
    policy = policy or RetryPolicy.from_env()
    fs, _ = filesystem_for(location, policy)
    try:
        # HEAD: the size, and whether the server refuses ranges outright. Retried; only a real 404
        # is "not found" (fsspec reports any failed HEAD as FileNotFoundError).
        info = with_retries(lambda: fs.info(location), url=location, policy=policy)
    except NotThere:
        raise NotThere(location, "not found on the server (HTTP 404)") from None
    size = info.get("size")
    if size is None:
        raise SourceFormatError(location, "the server reported no file size (Content-Length), which range reads need")
    if size == 0:
        raise SourceFormatError(location, "the server sent an empty file")
    if info.get("partial") is False:
        raise RangeRequestsUnsupported(location, _no_range_reason("it answers Accept-Ranges: none"))
    # Passing the size keeps fsspec from a second HEAD and from its streaming (non-seekable) file.
    handle = fs.open(location, "rb", block_size=block_size, size=size, cache_type="none")
    handle.cache = MemberSpanCache(block_size, _range_fetcher(handle, location, policy), size)
    return handle


def open_zip(location: str, block_size: int = IMAGE_BLOCK_SIZE, policy: Optional[RetryPolicy] = None) -> zipfile.ZipFile:
    handle = open_binary(location, block_size, policy)
    try:
        return ArchiveZipFile(handle)
    except zipfile.BadZipFile as error:
        handle.close()
        network = network_failure_behind(error)
        if network is not None:  # zipfile turns any OSError while finding the directory into BadZipFile
            raise network from None
        raise SourceFormatError(location, f"not a readable zip archive ({error})") from None
    except SourceFormatError:
        handle.close()
        raise


def read_url(url: str, policy: Optional[RetryPolicy] = None) -> bytes:
    """A whole small file (one image) from a URL, in one retried GET.

    NotThere (a FileNotFoundError) only for a real 404; any other failure that retries do not cure
    is a NetworkError.
    """
    policy = policy or RetryPolicy.from_env()
    fs, path = filesystem_for(url, policy)
    return with_retries(lambda: fs.cat_file(path), url=url, policy=policy)


def network_failure_behind(error: BaseException) -> Optional[NetworkError]:
    """The NetworkError that zipfile reported as a damaged archive, if that is what happened."""
    seen = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, NetworkError):
            return error
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return None


class ArchiveZipFile(zipfile.ZipFile):
    """A zip archive that owns its file handle and, over HTTP, fetches each member in one request."""

    def open(self, name, mode="r", pwd=None, *, force_zip64=False):
        cache = getattr(self.fp, "cache", None)
        if mode == "r" and isinstance(cache, MemberSpanCache):
            info = name if isinstance(name, zipfile.ZipInfo) else self.getinfo(name)
            if info.compress_size <= MAX_MEMBER_PREFETCH:
                cache.prefetch(*_member_span(info))
        return super().open(name, mode, pwd=pwd, force_zip64=force_zip64)

    def close(self):
        handle = self.fp
        super().close()
        if handle is not None:
            handle.close()  # ZipFile leaves a file object it was given open


def _member_span(info: zipfile.ZipInfo) -> tuple[int, int]:
    """Byte range of a member's local header and compressed data, from its central directory entry."""
    # The UTF-8 length is never shorter than the stored name (cp437 or UTF-8).
    header = _LOCAL_HEADER_SIZE + len(info.filename.encode("utf-8")) + len(info.extra) + _LOCAL_HEADER_SLACK
    return info.header_offset, info.header_offset + header + info.compress_size


class MemberSpanCache(ReadAheadCache):
    """fsspec's readahead cache plus `prefetch(start, end)`: one request for exactly one span.

    Readahead alone fetches `block_size` bytes past every member header: with 50-150 kB images that
    is the next few images too, so a capped build would pull much of an archive it barely needs.
    """

    name = "arr_coc_member_span"

    def prefetch(self, start: int, end: int) -> None:
        end = min(end, self.size)
        if start >= end or (self.start <= start and end <= self.end):
            return
        self.miss_count += 1
        self.total_requested_bytes += end - start
        self.cache = self.fetcher(start, end)
        self.start, self.end = start, start + len(self.cache)


def _range_fetcher(handle, location: str, policy: Optional[RetryPolicy] = None):
    """The handle's ranged GET under the retry policy, with fsspec's no-Range ValueError turned into
    our one-line error. A short body is retried (a dropped connection); a long one is an error."""

    def fetch_once(start: int, end: int) -> bytes:
        try:
            data = handle._fetch_range(start, end)
        except ValueError as error:
            if _FSSPEC_NO_RANGE in str(error):
                raise RangeRequestsUnsupported(location, _no_range_reason("it answered a ranged GET with the whole file")) from None
            raise
        if len(data) < end - start:
            raise TruncatedBody(f"the server sent {len(data)} bytes for the range {start}-{end - 1}")
        if len(data) > end - start:
            reason = f"the server sent {len(data)} bytes for the range {start}-{end - 1}: has the file changed?"
            raise SourceFormatError(location, reason)
        return data

    def fetch(start: int, end: int) -> bytes:
        return with_retries(lambda: fetch_once(start, end), url=location, byte_range=(start, end), policy=policy)

    return fetch
