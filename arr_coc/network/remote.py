"""Opening source archives that may be local files or URLs (http(s), s3, gs, hf, ... via fsspec).

Zip archives are opened for random access: a local file directly, a URL through ranged reads
(fsspec), so that a 20 GB image archive is never downloaded to read a few hundred images.
Over HTTP, opening an archive costs a HEAD and three small range GETs (end record, zip64 locator,
central directory), and reading a member of up to `MAX_MEMBER_PREFETCH` bytes costs exactly one
range GET for that member's bytes; object stores (s3://, gs://, hf://) get the same exact-span
reads through their filesystem's ranged fetch. A server that ignores Range requests gets a clear
error instead of a silent download of the whole archive. Every request (the HEAD, each range GET, a
single-image GET) runs under the build's retry policy (`arr_coc.network.retry`); a give-up is a one-line
NetworkError.

An archive is read as one version (`arr_coc.network.versions`): `open_zip(..., pin=validator)` fails
when the archive is no longer the version the build pinned, every HTTP range answer is checked
against it (ETag, Last-Modified, the Content-Range total; a 416), s3fs reads with `If-Match` on the
ETag, and `ArchiveZipFile.verify_unchanged()` asks the server again (at the end of a shard, and
before a damaged member or a failed read is blamed on the archive or the network).

Credentials for object stores come only from each filesystem's usual environment and config files
(AWS_* variables and ~/.aws for s3fs, Application Default Credentials for gcsfs, HF_TOKEN or the
cached login for hf://); the protocol packages themselves are optional installs.
"""

import os
import re
import zipfile
import zlib
from collections import Counter
from typing import BinaryIO, Callable, Optional

import fsspec
from fsspec.caching import ReadAheadCache
from fsspec.registry import known_implementations
from fsspec.spec import AbstractBufferedFile

from ..process.errors import SourceFormatError, exception_chain
from .retry import NetworkError, NotThere, RetryPolicy, TruncatedBody, filesystem_for, with_retries
from .versions import ChangedOnServer, changed, changed_on_disk, current_info, difference, forget_listing, local_validator, validator

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


_URL_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")


class RangeRequestsUnsupported(SourceFormatError):
    """An http(s) mirror whose server cannot serve byte ranges of an archive."""


class UnsupportedLocation(SourceFormatError):
    """A URL whose protocol fsspec does not know, or whose optional package is not installed."""


def _no_range_reason(evidence: str) -> str:
    return (
        f"the HTTP server does not support Range requests ({evidence}); zip archives are read by range requests, "
        "so serve the mirror with a Range-capable server or use a local directory"
    )


def url_protocol(location: str) -> Optional[str]:
    """The scheme of a URL ("s3" for "s3://bucket/key"); None for a local path (C:\\ has no "//")."""
    match = _URL_SCHEME.match(location)
    return match.group(1).lower() if match else None


def is_url(location: str) -> bool:
    return url_protocol(location) is not None


def _is_http(location: str) -> bool:
    return url_protocol(location) in ("http", "https")


def check_protocol(location: str) -> None:
    """Fail in one line, before any download, when fsspec cannot open this URL's protocol here."""
    protocol = url_protocol(location)
    try:
        fsspec.get_filesystem_class(protocol)
    except ImportError:
        package = _protocol_package(protocol)
        raise UnsupportedLocation(
            location, f"reading {protocol}:// URLs needs the optional package {package}: pip install {package}"
        ) from None
    except ValueError:
        raise UnsupportedLocation(location, f"fsspec knows no protocol {protocol!r}; use a local directory or an fsspec URL") from None


def _protocol_package(protocol: str) -> str:
    """The pip package of an fsspec protocol, from fsspec's own registry ("s3" -> "s3fs")."""
    known = known_implementations.get(protocol, {})
    return known.get("class", protocol).split(".")[0].split(":")[0]


def join_location(base: str, name: str) -> str:
    if is_url(base):
        return f"{base.rstrip('/')}/{name}"
    return os.path.join(base, name)


def open_binary(location: str, block_size: int, policy: Optional[RetryPolicy] = None, pin: Optional[dict] = None) -> BinaryIO:
    """A seekable binary file for a local path or a URL, reading members by exact ranges.

    For a URL, `pin` is the validator the build first saw (`versions.validator`); None pins the
    version found now. The handle's `arr_coc_version` is a `RemoteVersion` (None for a local file).
    A local file is checked against its pin (`versions.local_validator`) once it is open: what the
    handle reads is that file, whatever is renamed over its path later."""
    if not is_url(location):
        return _open_local(location, pin)
    policy = policy or RetryPolicy.from_env()
    if not _is_http(location):
        return _open_object(location, block_size, policy, pin)
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
    version = RemoteVersion(location, fs, location, pin or validator(info), policy)
    version.check_against(validator(info))
    # Passing the size keeps fsspec from a second HEAD and from its streaming (non-seekable) file.
    handle = fs.open(location, "rb", block_size=block_size, size=size, cache_type="none")
    read = http_range_reader(fs, location, version.pinned, _archive_without_ranges(location))
    handle.cache = MemberSpanCache(block_size, retried_range_reader(read, location, policy, version), size)
    handle.arr_coc_version = version
    return handle


def _open_local(path: str, pin: Optional[dict]) -> BinaryIO:
    handle = open(path, "rb")
    detail = difference(pin, local_validator(os.fstat(handle.fileno()))) if pin is not None else None
    if detail is not None:
        handle.close()
        raise changed_on_disk(path, detail)
    return handle


def _open_object(location: str, block_size: int, policy: RetryPolicy, pin: Optional[dict]) -> BinaryIO:
    """An object-store file (s3://, gs://, hf://, ...) with the same exact-span member reads as HTTP."""
    check_protocol(location)
    fs, path = filesystem_for(location, policy)  # credentials: the filesystem's own environment/config
    try:
        # Opening reads the object's metadata (its size): one request, retried like the others.
        # Fresh metadata, not a listing cached earlier in this process: it is what gets checked.
        forget_listing(fs, path)
        handle = with_retries(lambda: fs.open(path, "rb", block_size=block_size, cache_type="none"), url=location, policy=policy)
    except NotThere:
        raise NotThere(location, "not found in the object store") from None
    if not isinstance(handle, AbstractBufferedFile):
        return handle  # a filesystem without ranged reads (memory://, ...): a plain seekable file
    if not handle.size:
        handle.close()
        raise SourceFormatError(location, "the object is empty")
    opened = validator(handle.details)
    version = RemoteVersion(location, fs, path, pin or opened, policy)
    version.check_against(opened)
    # s3fs reads an open file with If-Match on its ETag (FileExpired when it changed); the others
    # are checked again by `verify_unchanged` when a read fails and at the end of each shard.
    handle.cache = MemberSpanCache(block_size, retried_range_reader(handle._fetch_range, location, policy, version), handle.size)
    handle.arr_coc_version = version
    return handle


class RemoteVersion:
    """The version of one remote file that a build reads: `pinned`, the validator it first saw."""

    def __init__(self, location: str, fs, path: str, pinned: dict, policy: RetryPolicy):
        self.location, self.fs, self.path, self.pinned, self.policy = location, fs, path, pinned, policy

    def check_against(self, current: dict) -> None:
        detail = difference(self.pinned, current)
        if detail is not None:
            raise changed(self.location, detail)

    def verify_unchanged(self) -> None:
        """Ask the server again (one retried HEAD or metadata request); ChangedOnServer if it has another version."""
        info = with_retries(lambda: current_info(self.fs, self.path), url=self.location, policy=self.policy)
        self.check_against(validator(info))

    def verify_unchanged_or_raise(self, failure: BaseException) -> None:
        """After `failure` (a read that failed): ChangedOnServer if the file changed, else `failure` itself.
        One quick question to the server: if it cannot answer either, the original failure stands."""
        try:
            info = current_info(self.fs, self.path)
        except Exception:  # noqa: BLE001 - the server cannot say: report what failed first
            raise failure
        self.check_against(validator(info))
        raise failure


def current_version(location: str, policy: Optional[RetryPolicy] = None) -> dict:
    """The validator a local or remote file has now: what a build pins it to."""
    if not is_url(location):
        return local_validator(os.stat(location))
    policy = policy or RetryPolicy.from_env()
    check_protocol(location)
    fs, path = filesystem_for(location, policy)
    try:
        return validator(with_retries(lambda: current_info(fs, path), url=location, policy=policy))
    except NotThere:
        raise NotThere(location, "not found on the server") from None


def _archive_without_ranges(location: str) -> Callable[[], SourceFormatError]:
    return lambda: RangeRequestsUnsupported(location, _no_range_reason("it answered a ranged GET with the whole file"))


def http_range_reader(fs, url: str, pinned: Optional[dict], no_range: Callable[[], Exception],
                      when: str = "during the build") -> Callable[[int, int], bytes]:
    """read(start, end) -> the server's answer to one ranged GET of `url`, checked against `pinned`.

    fsspec's own ranged read discards the headers that tell one version from another and turns a
    416 into an empty body; this GET (on fsspec's session, so its timeouts hold) checks them: an
    ETag or Last-Modified other than the pinned one, a Content-Range total other than the pinned
    size, or a 416 is `ChangedOnServer`. A 200 (the whole file) is `no_range()`, unless the range
    asked for was the whole file."""
    from fsspec.asyn import sync

    async def get(start: int, end: int) -> bytes:
        session = await fs.set_session()
        headers = {**fs.kwargs.get("headers", {}), "Range": f"bytes={start}-{end - 1}", "Accept-Encoding": "identity"}
        kwargs = {key: value for key, value in fs.kwargs.items() if key != "headers"}
        async with session.get(fs.encode_url(url), headers=headers, **kwargs) as response:
            if response.status == 416:
                raise changed(url, f"HTTP 416 for bytes {start}-{end - 1}: the file is shorter than when it was first read", when)
            response.raise_for_status()
            whole = response.status == 200
            if whole and not (start == 0 and pinned is not None and str(end) == pinned.get("size")):
                raise no_range()
            if pinned is not None:
                _check_answer(url, pinned, response.headers, whole, when)
            return await response.read()

    return lambda start, end: sync(fs.loop, get, start, end)


def _check_answer(url: str, pinned: dict, headers, whole: bool, when: str) -> None:
    answered = {name: headers[name] for name in ("ETag", "Last-Modified") if headers.get(name)}
    content_range = headers.get("Content-Range", "")
    total = content_range.rpartition("/")[2] if not whole else headers.get("Content-Length")
    if total and total.isdigit():
        answered["size"] = total
    detail = difference(pinned, answered)
    if detail is not None:
        raise changed(url, detail, when)


def open_zip(location: str, block_size: int = IMAGE_BLOCK_SIZE, policy: Optional[RetryPolicy] = None,
             pin: Optional[dict] = None) -> "ArchiveZipFile":
    """The archive at a local path or URL; a URL's reads are pinned to `pin` (see `open_binary`)."""
    handle = open_binary(location, block_size, policy, pin)
    try:
        return ArchiveZipFile(handle, location=location, version=getattr(handle, "arr_coc_version", None))
    except zipfile.BadZipFile as error:
        handle.close()
        network = network_failure_behind(error)
        if network is not None:  # zipfile turns any OSError while finding the directory into BadZipFile
            raise network from None
        if isinstance(error.__context__, ChangedOnServer):
            raise error.__context__ from None
        raise SourceFormatError(location, f"not a readable zip archive ({error})") from None
    except SourceFormatError:
        handle.close()
        raise


def open_archive_member(archive: zipfile.ZipFile, location: str, name: str, hint: str = "") -> BinaryIO:
    """`archive.open(name)`, with a missing or unopenable member as one line naming archive and member
    (`hint`: what the reader can do about a missing one)."""
    try:
        return archive.open(name)
    except KeyError:
        raise SourceFormatError(location, f"has no member {name}" + (f", {hint}" if hint else "")) from None
    except (zipfile.BadZipFile, NotImplementedError, RuntimeError, OSError, EOFError, zlib.error) as error:
        network = network_failure_behind(error)
        if network is not None:  # the network failed, not the archive
            raise network from None
        raise SourceFormatError(location, f"member {name} cannot be opened ({error})") from None


def read_url(url: str, policy: Optional[RetryPolicy] = None) -> bytes:
    """A whole small file (one image) from a URL, in one retried GET.

    NotThere (a FileNotFoundError) only for a real 404; any other failure that retries do not cure
    is a NetworkError.
    """
    policy = policy or RetryPolicy.from_env()
    fs, path = filesystem_for(url, policy)
    return with_retries(lambda: fs.cat_file(path), url=url, policy=policy)


def network_failure_behind(error: BaseException) -> Optional[OSError | ChangedOnServer]:
    """The NetworkError (or ChangedOnServer) that zipfile reported as a damaged archive, if that is what happened."""
    kinds = (NetworkError, ChangedOnServer)
    return next((candidate for candidate in exception_chain(error) if isinstance(candidate, kinds)), None)


class ArchiveZipFile(zipfile.ZipFile):
    """A zip archive that owns its file handle and, over HTTP, fetches each member in one request.

    A name stored twice cannot be opened: zipfile would silently read the last copy, and an appended
    `{"questions": []}` would quietly empty a whole split.
    """

    def __init__(self, file, mode="r", *args, location: Optional[str] = None, version: Optional[RemoteVersion] = None, **kwargs):
        super().__init__(file, mode, *args, **kwargs)
        self.location = location or self.filename or repr(file)
        self.version = version  # None for a local file
        # Once per archive (a Counter over ~80k image names is milliseconds), not once per member.
        self.duplicated_names = frozenset(name for name, count in Counter(self.namelist()).items() if count > 1)

    def open(self, name, mode="r", pwd=None, *, force_zip64=False):
        if self.duplicated_names and mode == "r":
            member = name.filename if isinstance(name, zipfile.ZipInfo) else name
            if member in self.duplicated_names:
                raise SourceFormatError(self.location, f"has more than one member named {member} (zipfile would read only the last)")
        cache = getattr(self.fp, "cache", None)
        if mode == "r" and isinstance(cache, MemberSpanCache):
            info = name if isinstance(name, zipfile.ZipInfo) else self.getinfo(name)
            if info.compress_size <= MAX_MEMBER_PREFETCH:
                cache.prefetch(*_member_span(info))
        return super().open(name, mode, pwd=pwd, force_zip64=force_zip64)

    def verify_unchanged(self) -> None:
        """A remote archive: ChangedOnServer if the server now has another version than the one read."""
        if self.version is not None:
            self.version.verify_unchanged()

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


def retried_range_reader(read: Callable[[int, int], bytes], location: str, policy: Optional[RetryPolicy] = None,
                         version: Optional[RemoteVersion] = None) -> Callable[[int, int], bytes]:
    """fetch(start, end) -> exactly those bytes of `location`: `read(start, end)` under the retry policy.
    A short body is retried (a dropped connection), a long one is an error. When retries give up and
    `version` is known, the server is asked whether the file changed: a shrunk or replaced file is
    `ChangedOnServer`, not a network failure."""

    def fetch_once(start: int, end: int) -> bytes:
        try:
            data = read(start, end)
        except OSError as error:
            if type(error).__name__ == "FileExpired":  # s3fs: the ETag no longer matches (If-Match)
                raise changed(location, "its ETag no longer matches") from None
            raise
        if len(data) < end - start:
            raise TruncatedBody(f"the server sent {len(data)} bytes for the range {start}-{end - 1}")
        if len(data) > end - start:
            reason = f"the server sent {len(data)} bytes for the range {start}-{end - 1}: has the file changed?"
            raise SourceFormatError(location, reason)
        return data

    def fetch(start: int, end: int) -> bytes:
        try:
            return with_retries(lambda: fetch_once(start, end), url=location, byte_range=(start, end), policy=policy)
        except NetworkError as failure:
            if version is not None:
                version.verify_unchanged_or_raise(failure)  # a file that changed is not a network failure
            raise

    return fetch
