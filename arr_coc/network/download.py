"""Resumable, verified downloads into a persistent cache, each file one version of the remote file.

A download reads the remote file in ranged chunks (`CHUNK_SIZE`, `PARALLEL_CHUNKS` in flight), each
under the retry policy, and appends them in order to `dest + ".incomplete"`. Beside it,
`dest + ".incomplete.json"` records where the bytes came from: the URL and its validator (ETag /
Last-Modified / size, or the object store's equivalents: `arr_coc.network.versions`).
The next run resumes from the bytes on disk with a Range request if the validator is unchanged and
says more than the size; otherwise it starts again from zero: bytes of two versions are never
stitched together. Every HTTP chunk is checked against that validator as it arrives (another ETag,
another Content-Range total, a 416: the file changed), and the file is asked for again at the end;
a file that changed is fetched again from zero once, then the download fails in one line. A
finished file must have the announced size and a `.zip` must open (central directory readable);
only then is it renamed to `dest` in one step, with its validator in `dest + ".version.json"`.

A cached file is used only while the server still has that version: each use costs one HEAD (or
metadata request) and no body; another validator, or a cached file with no record, is fetched
again (one log line says so). When the server cannot be asked (the network is down) the build
fails naming the URL and the cached copy, unless the user asked for offline use
(`HF_DATASETS_OFFLINE=1` or `HF_HUB_OFFLINE=1`, the switches datasets and huggingface_hub read):
then cached files are used unchecked, with a warning each, and nothing is requested for them.

A server without Range support (`python -m http.server`) gets one whole-file GET, retried from the
start. No lock file stays beside a file, and a failed download keeps its partial file only when a
resume can use it. Works for http(s) URLs and any fsspec URL whose filesystem reads byte ranges
(s3://, gs://, hf://...).
"""

import contextlib
import hashlib
import itertools
import json
import logging
import os
import posixpath
import threading
import time
import zipfile
from collections import deque
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Callable, Optional

from filelock import FileLock, Timeout
from tqdm.auto import tqdm

from ..process.errors import SourceFormatError
from ..process.interrupts import wait_for
from .remote import http_range_reader, retried_range_reader
from .retry import NetworkError, NotThere, RetryPolicy, TruncatedBody, filesystem_for, with_retries
from .versions import ChangedOnServer, changed, current_info, difference, has_content_validator, validator

logger = logging.getLogger(__name__)

# One ranged request per chunk: a dropped connection costs at most one chunk, and a chunk is
# big enough that a request's round trip is a small share of its transfer time.
CHUNK_SIZE = 16 * 1024 * 1024
# Ranged requests of one download in flight at once (memory: this many chunks).
PARALLEL_CHUNKS = 4
INCOMPLETE_SUFFIX = ".incomplete"
LOCK_SUFFIX = ".lock"  # download()'s guard against a second writer of the same file, removed after each use
SIDECAR_SUFFIX = ".incomplete.json"
VERSION_SUFFIX = ".version.json"  # beside a finished cached file: the URL and the validator it was fetched at
DOWNLOADS_SUBDIR = "downloads"  # datasets' own name for its download folder (config.DOWNLOADED_DATASETS_DIR)
# A file that changed on the server while it was being fetched is fetched again from zero this many times.
_MAX_RESTARTS = 1
# The switches for offline use that datasets and huggingface_hub already read (datasets.config), and their true values.
OFFLINE_VARIABLES = ("HF_DATASETS_OFFLINE", "HF_HUB_OFFLINE")
_TRUE = {"1", "ON", "YES", "TRUE"}
OFFLINE_HINT = "HF_DATASETS_OFFLINE=1 uses cached files without checking them"


@dataclass(frozen=True)
class RemoteFile:
    size: Optional[int]
    validator: dict  # str -> str, including "size"


def offline() -> bool:
    """Whether the user asked for offline use: HF_DATASETS_OFFLINE (or else HF_HUB_OFFLINE) is 1/ON/YES/TRUE."""
    for variable in OFFLINE_VARIABLES:
        value = os.environ.get(variable)
        if value is not None:
            return value.strip().upper() in _TRUE
    return False


def download(url: str, dest: str, *, policy: Optional[RetryPolicy] = None, progress: bool = True, keep_version: bool = True) -> str:
    """Fetch `url` to `dest` (resuming, verified) and return `dest`.

    `keep_version`: record the validator beside `dest` and, next time, use an existing `dest` only
    while the server still has that version (the download cache). Without it (a mirror, which holds
    only the files), an existing `dest` is returned as it is."""
    if os.path.exists(dest) and not keep_version:
        return dest
    policy = policy or RetryPolicy.from_env()
    if offline() and keep_version:
        return _offline_copy(url, dest)
    os.makedirs(os.path.dirname(os.path.abspath(dest)) or ".", exist_ok=True)
    with _only_writer(dest):  # two builds sharing a cache must not append to the same partial file
        fs, path = filesystem_for(url, policy)
        if os.path.exists(dest) and (not keep_version or _cached_copy_is_current(fs, path, url, dest, policy)):
            return dest
        try:
            remote = _fetch(fs, path, url, dest, policy, progress)
        except BaseException:
            _drop_partial_unless_resumable(dest)
            raise
        os.replace(dest + INCOMPLETE_SUFFIX, dest)
        if keep_version:
            _write_json(dest + VERSION_SUFFIX, {"url": url, "validator": remote.validator})
        remove_if_present(dest + SIDECAR_SUFFIX)
        return dest


def _fetch(fs, path: str, url: str, dest: str, policy: RetryPolicy, progress: bool) -> RemoteFile:
    """Fetch into `dest.incomplete` until one whole version of the file is there; return that version."""
    remote = with_retries(lambda: _stat(fs, path), url=url, policy=policy)
    for restart in range(_MAX_RESTARTS + 1):
        try:
            _fetch_to_partial(fs, path, url, dest, remote, policy, progress)
            again = with_retries(lambda: _stat(fs, path), url=url, policy=policy)
            detail = difference(remote.validator, again.validator)
            if detail is None:
                _verify(url, dest + INCOMPLETE_SUFFIX, remote)
                return remote
            error = changed(url, detail, "during the download")
        except ChangedOnServer as raised:
            error = raised
        if restart == _MAX_RESTARTS:
            raise error
        logger.warning("%s; fetching it again from zero", str(error).replace("; run again", ""))
        remote = with_retries(lambda: _stat(fs, path), url=url, policy=policy)
        _start_afresh(dest)
    raise AssertionError("unreachable")


def _cached_copy_is_current(fs, path: str, url: str, dest: str, policy: RetryPolicy) -> bool:
    """Whether the cached `dest` is the version the server has now (one HEAD or metadata request)."""
    try:
        now = with_retries(lambda: _stat(fs, path), url=url, policy=policy)
    except NotThere:
        raise NotThere(url, f"not found on the server any more (its cached copy {dest} is not used)") from None
    except NetworkError as error:
        reason = f"{error.last_error}; cannot check the cached copy {dest} ({OFFLINE_HINT})"
        raise NetworkError(url, None, reason, attempts=error.attempts, status=error.status) from error
    recorded = _read_json(dest + VERSION_SUFFIX)
    if recorded is None or recorded.get("url") != url or not isinstance(recorded.get("validator"), dict):
        logger.warning("%s: no version is recorded for its cached copy %s; fetching it again", url, dest)
        return False
    detail = difference(recorded["validator"], now.validator)
    if detail is not None:
        logger.warning("%s changed on the server since it was cached in %s (%s); fetching it again", url, dest, detail)
        return False
    return True


def _offline_copy(url: str, dest: str) -> str:
    variable = next(name for name in OFFLINE_VARIABLES if os.environ.get(name) is not None)
    if not os.path.exists(dest):
        raise FileNotFoundError(f"{url}: not in the download cache ({dest}) and offline use is on ({variable}={os.environ[variable]})")
    logger.warning("%s: offline (%s): using the cached copy %s without checking it against the server", url, variable, dest)
    return dest


# The lock files this process's downloads hold now: `remove_held_locks` removes them before an exit
# that runs no `finally` (fetch_sources leaves at once on Ctrl-C, its download threads still running).
# A lock file is created and recorded under one guard, and none is created once the process is leaving,
# so no thread can make one between that removal and the exit (5 of 20 interrupted fetches kept one).
_locks_guard = threading.Lock()
_held_locks: set = set()
_leaving = False
# How often a download waits for another writer of the same file (filelock's own default poll).
LOCK_POLL_SECONDS = 0.05


@contextlib.contextmanager
def _only_writer(dest: str):
    """One writer of `dest` at a time (flock, so a lock left by a killed process never blocks). The
    lock file is removed while still held: filelock's waiters notice an unlinked file and lock anew."""
    lock_file = dest + LOCK_SUFFIX
    lock = FileLock(lock_file)
    _acquire_recorded(lock, lock_file)
    try:
        yield
    finally:
        with _locks_guard:
            remove_if_present(lock_file)
            _held_locks.discard(lock_file)
        lock.release()


def _acquire_recorded(lock: FileLock, lock_file: str) -> None:
    """Take the lock and record its file in one step under the guard; wait for another writer outside it."""
    while True:
        with _locks_guard:
            if _leaving:
                raise InterruptedError(f"{lock_file}: not started, the process is leaving")
            try:
                lock.acquire(blocking=False)
            except Timeout:
                pass  # another writer (a thread or process) has it
            else:
                _held_locks.add(lock_file)
                return
        time.sleep(LOCK_POLL_SECONDS)


def remove_held_locks() -> None:
    """Remove the lock files of the downloads still running in this process, right before it exits
    without unwinding them (os._exit); their locks (flock) end with the process. No download starts after."""
    global _leaving
    with _locks_guard:
        _leaving = True
        for lock_file in tuple(_held_locks):
            remove_if_present(lock_file)


def _drop_partial_unless_resumable(dest: str) -> None:
    """After a failure, keep `dest.incomplete` (and its record) only if the next run can resume from it."""
    partial, sidecar = dest + INCOMPLETE_SUFFIX, dest + SIDECAR_SUFFIX
    recorded = _read_json(sidecar)
    resumable = (
        os.path.exists(partial) and os.path.getsize(partial) > 0
        and recorded is not None and has_content_validator(recorded.get("validator") or {})
    )  # fmt: skip
    if not resumable:
        _start_afresh(dest)


def cached_download(url: str, cache_dir: str, *, policy: Optional[RetryPolicy] = None, progress: bool = True) -> str:
    """`download` into `cache_dir` under a name fixed by the URL: one file per URL, never shared by two."""
    return download(url, cached_path(url, cache_dir), policy=policy, progress=progress)


def cached_path(url: str, cache_dir: str) -> str:
    """Where `cached_download` keeps `url`: the URL's SHA-256 (no two URLs collide) plus its base name (readable)."""
    digest = hashlib.sha256(url.encode("utf-8")).hexdigest()[:32]
    name = posixpath.basename(url.split("?", 1)[0].rstrip("/")) or "download"
    return os.path.join(cache_dir, f"{digest}-{name}")


def default_cache_dir() -> str:
    """The datasets cache (`HF_DATASETS_CACHE`, normally ~/.cache/huggingface/datasets)."""
    import datasets.config

    return os.environ.get("HF_DATASETS_CACHE") or str(datasets.config.HF_DATASETS_CACHE)


def downloads_dir(cache_dir: Optional[str] = None) -> str:
    """Where builds keep their downloads: `<cache>/downloads`, the folder datasets itself downloads to."""
    return os.path.join(os.path.expanduser(cache_dir or default_cache_dir()), DOWNLOADS_SUBDIR)


# -- one pass ------------------------------------------------------------------------------------


def _stat(fs, path: str) -> RemoteFile:
    fields = validator(current_info(fs, path))
    size = int(fields["size"]) if fields["size"].isdigit() else None
    return RemoteFile(size=size, validator=fields)


def _fetch_to_partial(fs, path: str, url: str, dest: str, remote: RemoteFile, policy: RetryPolicy, progress: bool) -> None:
    partial, sidecar = dest + INCOMPLETE_SUFFIX, dest + SIDECAR_SUFFIX
    offset = _resume_offset(partial, sidecar, url, remote)
    _write_json(sidecar, {"url": url, "validator": remote.validator})
    if remote.size is None:
        _fetch_whole(fs, path, url, partial, remote, policy, progress)  # no size, no ranges to resume by
        return
    fetch = _span_fetcher(fs, path, url, remote, policy)
    spans = [(start, min(start + CHUNK_SIZE, remote.size)) for start in range(offset, remote.size, CHUNK_SIZE)]
    try:
        with open(partial, "ab") as handle, _bar(url, remote.size, offset, progress) as bar:
            for data in _in_order(lambda span: fetch(*span), spans, PARALLEL_CHUNKS):
                handle.write(data)
                handle.flush()  # what is on disk is what the next run resumes from: always a prefix
                bar.update(len(data))
    except _NoRanges:
        logger.info("%s: the server does not answer Range requests; fetching the whole file in one GET", url)
        _fetch_whole(fs, path, url, partial, remote, policy, progress)


class _NoRanges(Exception):
    """The server answered a ranged GET with the whole file."""


def _bar(url: str, total: Optional[int], initial: int, progress: bool):
    name = os.path.basename(url.split("?", 1)[0])
    return tqdm(total=total, initial=initial, unit="B", unit_scale=True, unit_divisor=1024, desc=name, disable=not progress)


def _fetch_whole(fs, path: str, url: str, partial: str, remote: RemoteFile, policy: RetryPolicy, progress: bool) -> None:
    """One GET of the whole file, streamed to `partial`; a failed transfer is retried from the start."""

    def attempt() -> None:
        with open(partial, "wb") as handle, _bar(url, remote.size, 0, progress) as bar:
            for block in _stream(fs, path):
                handle.write(block)
                bar.update(len(block))
        have = os.path.getsize(partial)
        if remote.size is not None and have < remote.size:
            raise TruncatedBody(f"the server sent {have} of {remote.size} bytes")

    with_retries(attempt, url=url, policy=policy)


def _stream(fs, path: str, block: int = 1024 * 1024):
    """The file's bytes in blocks, from one sequential read (a streaming GET over HTTP)."""
    with fs.open(path, "rb", block_size=0) as handle:
        while data := handle.read(block):
            yield data


def _in_order(fetch: Callable, spans: list, window: int):
    """fetch(span) for each span, `window` at a time in threads, yielded in order.

    Several requests in flight hide each request's round trip (a long one to a far host); results
    are written in order, so the file on disk stays a prefix. A failure stops at that span: the
    chunks before it are kept, those after it (already fetched or not) are dropped. So does Ctrl-C or
    SIGTERM, at once: the requests in flight are left to end on their own in daemon threads (waiting
    for them took as long as a 16 MB chunk over a slow link, and their bytes could not be kept: they
    come after the missing one).
    """
    if window <= 1:
        for span in spans:
            yield fetch(span)
        return
    pending = deque()
    upcoming = iter(spans)
    try:
        for span in itertools.islice(upcoming, window):
            pending.append(_in_a_thread(fetch, span))
        while pending:
            wait_for([pending[0]])  # not future.result(): that would miss a signal a chunk's thread took
            data = pending.popleft().result()
            for span in itertools.islice(upcoming, 1):
                pending.append(_in_a_thread(fetch, span))
            yield data
    except Exception:
        # A chunk failed: the others in flight end before the failure is reported, as they always did.
        # Not on Ctrl-C or SIGTERM (KeyboardInterrupt), nor when the reader stops (GeneratorExit).
        wait_for(pending)
        raise


def _in_a_thread(fn: Callable, arg) -> Future:
    """fn(arg) in a new daemon thread: one an interrupted download does not wait for, nor the exit after it."""
    future = Future()

    def run():
        future.set_running_or_notify_cancel()
        try:
            future.set_result(fn(arg))
        except BaseException as error:  # noqa: BLE001 - handed to the reader of the future
            future.set_exception(error)

    threading.Thread(target=run, name="download", daemon=True).start()
    return future


def _resume_offset(partial: str, sidecar: str, url: str, remote: RemoteFile) -> int:
    """Bytes already on disk that belong to this very version of the file; 0 (and a clean partial) otherwise."""
    if os.path.exists(partial):
        recorded = _read_json(sidecar)
        have = os.path.getsize(partial)
        same = recorded is not None and recorded.get("url") == url and recorded.get("validator") == remote.validator
        if same and has_content_validator(remote.validator) and remote.size is not None and have <= remote.size:
            if have:
                logger.info("%s: resuming at byte %d of %d", url, have, remote.size)
            return have
        if have and not same:
            logger.info("%s: the partial download is of another version of the file; starting again from zero", url)
        elif have:
            logger.info("%s: the server gives no validator beyond the size, so the partial download may be of "
                        "another version; starting again from zero", url)
    with open(partial, "wb"):
        pass
    return 0


def _start_afresh(dest: str) -> None:
    remove_if_present(dest + INCOMPLETE_SUFFIX)
    remove_if_present(dest + SIDECAR_SUFFIX)


def _span_fetcher(fs, path: str, url: str, remote: RemoteFile, policy: RetryPolicy) -> Callable[[int, int], bytes]:
    """fetch(start, end) -> exactly those bytes, retried under the policy (remote.retried_range_reader).
    Over HTTP each answer is checked against the version being fetched (remote.http_range_reader)."""
    from fsspec.implementations.http import HTTPFileSystem

    if isinstance(fs, HTTPFileSystem):
        read = http_range_reader(fs, path, remote.validator, _NoRanges, "during the download")
    else:

        def read(start: int, end: int) -> bytes:
            return fs.cat_file(path, start=start, end=end)

    return retried_range_reader(read, url, policy)


def _verify(url: str, partial: str, remote: RemoteFile) -> None:
    have = os.path.getsize(partial)
    if remote.size is not None and have != remote.size:
        remove_if_present(partial)
        raise SourceFormatError(url, f"downloaded {have} bytes into {partial}, the server announced {remote.size}")
    if url.split("?", 1)[0].lower().endswith(".zip"):
        try:
            with zipfile.ZipFile(partial) as archive:
                archive.infolist()
        except (zipfile.BadZipFile, OSError) as error:
            remove_if_present(partial)  # whole and unchanged, yet unreadable: the next run fetches it afresh
            raise SourceFormatError(url, f"the downloaded archive does not open as a zip ({error}; removed {partial})") from None


def _read_json(path: str) -> Optional[dict]:
    try:
        with open(path) as handle:
            return json.load(handle)
    except (OSError, ValueError):
        return None


def _write_json(path: str, record: dict) -> None:
    with open(path + ".tmp", "w") as handle:
        json.dump(record, handle)
    os.replace(path + ".tmp", path)


def remove_if_present(path: str) -> None:
    try:
        os.remove(path)
    except FileNotFoundError:
        pass


__all__ = [
    "download", "cached_download", "cached_path", "default_cache_dir", "downloads_dir", "remove_if_present", "offline",
    "remove_held_locks",
    "NotThere", "CHUNK_SIZE", "LOCK_SUFFIX", "VERSION_SUFFIX", "OFFLINE_VARIABLES",
]  # fmt: skip
