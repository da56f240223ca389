"""Resumable, verified downloads into a persistent cache.

A download reads the remote file in ranged chunks (`CHUNK_SIZE`, `PARALLEL_CHUNKS` in flight), each
under the retry policy, and appends them in order to `dest + ".incomplete"`. Beside it,
`dest + ".incomplete.json"` records where the bytes came from: the URL and its validator (ETag /
Last-Modified / size, or the object store's equivalents).
The next run resumes from the bytes on disk with a Range request if the validator is unchanged, and
starts again from zero if it changed: bytes of two versions are never stitched together. A finished
file must have the announced size, its validator must still be the same, and a `.zip` must open
(central directory readable); only then is it renamed to `dest` in one step.

Works for http(s) URLs and any fsspec URL whose filesystem reads byte ranges (s3://, gs://, hf://...).
"""

import hashlib
import itertools
import json
import logging
import os
import posixpath
import threading
import zipfile
from collections import deque
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Callable, Optional

from filelock import FileLock
from tqdm.auto import tqdm

from ..process.errors import SourceFormatError
from ..process.interrupts import wait_for
from .remote import retried_range_reader
from .retry import NotThere, RetryPolicy, filesystem_for, with_retries

logger = logging.getLogger(__name__)

# One ranged request per chunk: a dropped connection costs at most one chunk, and a chunk is
# big enough that a request's round trip is a small share of its transfer time.
CHUNK_SIZE = 16 * 1024 * 1024
# Ranged requests of one download in flight at once (memory: this many chunks).
PARALLEL_CHUNKS = 4
INCOMPLETE_SUFFIX = ".incomplete"
LOCK_SUFFIX = ".lock"  # download()'s guard against a second writer of the same file
SIDECAR_SUFFIX = ".incomplete.json"
DOWNLOADS_SUBDIR = "downloads"  # datasets' own name for its download folder (config.DOWNLOADED_DATASETS_DIR)
# Fields that change when a remote file changes, across fsspec filesystems (http, s3, gcs, hf, local).
_VALIDATOR_FIELDS = ("ETag", "etag", "Last-Modified", "LastModified", "last_modified", "generation", "updated", "mtime", "md5Hash")
# Passes over a file whose validator changed while it was being fetched, before giving up.
_MAX_RESTARTS = 2


@dataclass(frozen=True)
class RemoteFile:
    size: Optional[int]
    validator: dict  # str -> str, including "size"


def download(url: str, dest: str, *, policy: Optional[RetryPolicy] = None, progress: bool = True) -> str:
    """Fetch `url` to `dest` (resuming, verified) and return `dest`; an existing `dest` costs no request."""
    if os.path.exists(dest):
        return dest
    policy = policy or RetryPolicy.from_env()
    os.makedirs(os.path.dirname(os.path.abspath(dest)) or ".", exist_ok=True)
    # Two builds sharing a cache must not append to the same partial file.
    with FileLock(dest + LOCK_SUFFIX):
        if os.path.exists(dest):
            return dest
        fs, path = filesystem_for(url, policy)
        remote = with_retries(lambda: _stat(fs, path), url=url, policy=policy)
        for _ in range(_MAX_RESTARTS + 1):
            _fetch_to_partial(fs, path, url, dest, remote, policy, progress)
            again = with_retries(lambda: _stat(fs, path), url=url, policy=policy)
            if again.validator == remote.validator:
                _verify(url, dest + INCOMPLETE_SUFFIX, remote)
                os.replace(dest + INCOMPLETE_SUFFIX, dest)
                remove_if_present(dest + SIDECAR_SUFFIX)
                return dest
            logger.warning("%s changed on the server during the download; starting again from zero", url)
            remote = again  # what the next pass fetches, and must still find when it ends
        raise SourceFormatError(url, f"the file kept changing on the server during {_MAX_RESTARTS + 1} downloads")


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
    info = fs.info(path)
    size = info.get("size")
    validator = {"size": str(size)}
    for field in _VALIDATOR_FIELDS:
        if info.get(field) is not None:
            validator[field] = str(info[field])
    return RemoteFile(size=size, validator=validator)


def _fetch_to_partial(fs, path: str, url: str, dest: str, remote: RemoteFile, policy: RetryPolicy, progress: bool) -> None:
    partial, sidecar = dest + INCOMPLETE_SUFFIX, dest + SIDECAR_SUFFIX
    offset = _resume_offset(partial, sidecar, url, remote)
    _write_json(sidecar, {"url": url, "validator": remote.validator})
    if remote.size is None:
        # No size, no ranges to resume by: one whole read (retried from the start).
        data = with_retries(lambda: fs.cat_file(path), url=url, policy=policy)
        with open(partial, "wb") as handle:
            handle.write(data)
        return
    fetch = _span_fetcher(fs, path, url, remote.size, policy)

    spans = [(start, min(start + CHUNK_SIZE, remote.size)) for start in range(offset, remote.size, CHUNK_SIZE)]
    name = os.path.basename(url.split("?", 1)[0])
    with open(partial, "ab") as handle, tqdm(
        total=remote.size, initial=offset, unit="B", unit_scale=True, unit_divisor=1024, desc=name, disable=not progress
    ) as bar:
        for data in _in_order(lambda span: fetch(*span), spans, PARALLEL_CHUNKS):
            handle.write(data)
            handle.flush()  # what is on disk is what the next run resumes from: always a prefix
            bar.update(len(data))


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
        if same and remote.size is not None and have <= remote.size:
            if have:
                logger.info("%s: resuming at byte %d of %d", url, have, remote.size)
            return have
        if have:
            logger.info("%s: the partial download is of another version of the file; starting again from zero", url)
    with open(partial, "wb"):
        pass
    return 0


def _span_fetcher(fs, path: str, url: str, size: int, policy: RetryPolicy) -> Callable[[int, int], bytes]:
    """fetch(start, end) -> exactly those bytes, retried under the policy (remote.retried_range_reader)."""
    from fsspec.implementations.http import HTTPFileSystem

    if isinstance(fs, HTTPFileSystem):
        # fsspec's HTTPFile checks that the answer is a range, not a 200 with the whole file.
        handle = fs.open(path, "rb", block_size=CHUNK_SIZE, size=size, cache_type="none")
        read = handle._fetch_range
    else:

        def read(start: int, end: int) -> bytes:
            return fs.cat_file(path, start=start, end=end)

    return retried_range_reader(
        read, url, lambda: SourceFormatError(url, "the server does not support Range requests, which resumable downloads need"),
        policy,
    )  # fmt: skip


def _verify(url: str, partial: str, remote: RemoteFile) -> None:
    have = os.path.getsize(partial)
    if remote.size is not None and have != remote.size:
        remove_if_present(partial)
        raise SourceFormatError(url, f"downloaded {have} bytes, the server announced {remote.size}")
    if url.split("?", 1)[0].lower().endswith(".zip"):
        try:
            with zipfile.ZipFile(partial) as archive:
                archive.infolist()
        except (zipfile.BadZipFile, OSError) as error:
            remove_if_present(partial)  # whole and unchanged, yet unreadable: the next run fetches it afresh
            raise SourceFormatError(url, f"the downloaded archive does not open as a zip ({error})") from None


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


__all__ = ["download", "cached_download", "cached_path", "default_cache_dir", "downloads_dir", "remove_if_present", "NotThere", "CHUNK_SIZE", "LOCK_SUFFIX"]
