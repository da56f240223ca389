"""One version of every remote file: what identifies it, and the one-line error when it changes.

A remote file's *validator* is what its server says changes when its content changes: the size,
plus whichever of these the filesystem reports (fsspec `info()`): an HTTP server's ETag and
Last-Modified, S3's ETag and LastModified, GCS's generation and md5Hash, the Hub's blob id and LFS
sha256 (`HfFileSystem.info()`: `blob_id`, `lfs.sha256`), a local file's mtime. Downloads keep it
beside the file they wrote (resume only the same version, revalidate a cached file), and every
archive a build reads by range is pinned to the validator it had when the build first looked at
it: a read that sees another one fails the build with `ChangedOnServer`, never as corrupt or
missing images. Where a server offers nothing beyond the size, only a change of size is visible.
A local file (a mirror on disk, or a download in the cache that another build may refetch) is
pinned the same way, by its size and modification time (`local_validator`).
"""

import contextlib
from typing import Optional

from ..process.errors import SourceFormatError

# Fields that change when a remote file's content changes, across fsspec filesystems (http, s3,
# gcs, hf, local); a dotted name is a field of a nested record (the Hub's `lfs` dict).
# The most telling first: an error names the first field that differs.
VALIDATOR_FIELDS = (
    "generation", "ETag", "etag", "blob_id", "lfs.sha256", "Last-Modified", "LastModified", "last_modified",
    "md5Hash", "updated", "mtime",
)  # fmt: skip


class ChangedOnServer(SourceFormatError):
    """The remote file is not the version this build (or this download) started with. Not retried:
    another try would mix two versions; running again starts from one."""


def changed(url: str, detail: str, when: str = "during the build") -> ChangedOnServer:
    return ChangedOnServer(url, f"changed on the server {when} ({detail}); run again")


def validator(info: dict) -> dict:
    """{field: str} of an fsspec `info()` record: "size" always, the fields above when present."""
    fields = {"size": str(info.get("size"))}
    for name in VALIDATOR_FIELDS:
        value = info
        for part in name.split("."):
            value = value.get(part) if isinstance(value, dict) else None
        if value is not None:
            fields[name] = str(value)
    return fields


def local_validator(stat) -> dict:
    """The validator of a local file from its `os.stat`/`os.fstat`: a file replaced (a download
    renamed into the cache, a mirror file copied over) has another modification time."""
    return {"size": str(stat.st_size), "mtime": str(stat.st_mtime_ns)}


def changed_on_disk(path: str, detail: str) -> ChangedOnServer:
    return ChangedOnServer(path, f"changed on disk during the build ({detail}); run again")


def has_content_validator(fields: dict) -> bool:
    """Whether the server says more than the size: with the size alone, two versions of one
    length look the same, so a partial download of that file cannot be trusted to resume."""
    return any(name != "size" for name in fields)


def difference(pinned: dict, current: dict) -> Optional[str]:
    """What differs between two validators ('ETag "a" -> "b"'), comparing the fields both have; None if nothing."""
    for name in ("size", *VALIDATOR_FIELDS):
        if name in pinned and name in current and pinned[name] != current[name]:
            return f"{name} {pinned[name]} -> {current[name]}"
    return None


def forget_listing(fs, path: str) -> None:
    """Drop what this process's listing cache remembers of `path` (s3fs, gcsfs and HfFileSystem cache
    listings per filesystem instance, and instances are shared): the next `info()` asks the server."""
    with contextlib.suppress(Exception):  # a filesystem without a cache, or one that cannot invalidate one path
        fs.invalidate_cache(path)


def current_info(fs, path: str) -> dict:
    """The file's `info()` as the server has it now."""
    forget_listing(fs, path)
    return fs.info(path)


__all__ = [
    "ChangedOnServer", "changed", "changed_on_disk", "validator", "local_validator", "has_content_validator", "difference", "forget_listing", "current_info",
    "VALIDATOR_FIELDS",
]  # fmt: skip
