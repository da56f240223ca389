"""Deterministic zip members and streamed JSON: the byte-identity of the mirror rests here.

Every member gets a fixed timestamp and Unix attributes, JSON is written item by item with json's default
separators (so a multi-GB question file never exists as one string), and archives are written under a
temporary name and renamed on success, so an interrupted run never leaves a half-written file under an
official name.
"""
from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path
from typing import Any, Iterable

# DOS timestamps have a 2-second resolution; a fixed one keeps two runs byte-identical.
ZIP_DATE_TIME = (2017, 4, 26, 17, 7, 12)
# Above this many estimated bytes a streamed member is opened with ZIP64 from the start (zipfile cannot
# switch to ZIP64 once it has started writing a member of unknown size).
ZIP64_THRESHOLD = 1 << 30


def zip_info(name: str, compress: int) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, date_time=ZIP_DATE_TIME)
    info.compress_type = compress
    info.create_system = 3  # Unix, regardless of the host, for identical bytes everywhere
    info.external_attr = (0o40755 << 16) | 0x10 if name.endswith("/") else 0o100644 << 16
    return info


class Stream:
    """A JSON value written item by item: kind "list" (items are values) or "dict" (items are (key, value))."""

    def __init__(self, kind: str, items: Iterable, sort_keys: bool = False):
        self.kind, self.items, self.sort_keys = kind, items, sort_keys


def write_json_member(zf: zipfile.ZipFile, name: str, pairs: list[tuple[str, Any]], large: bool = False) -> int:
    """Write a top-level JSON object whose values may be Streams, without building the whole text.

    Returns the number of bytes written.  Separators are json's defaults (", " and ": "); the buffer is
    flushed about every MiB to keep the per-write overhead low."""
    written = 0
    with zf.open(zip_info(name, zipfile.ZIP_DEFLATED), "w", force_zip64=large) as fh:
        buf: list[str] = []
        size = 0

        def emit(text: str) -> None:
            nonlocal size, written
            buf.append(text)
            size += len(text)
            if size > 1 << 20:
                data = "".join(buf).encode("utf-8")
                fh.write(data)
                written += len(data)
                buf.clear()
                size = 0

        emit("{")
        for index, (key, value) in enumerate(pairs):
            emit((", " if index else "") + json.dumps(key) + ": ")
            if isinstance(value, Stream):
                dumps = json.JSONEncoder(sort_keys=value.sort_keys).encode
                emit("[" if value.kind == "list" else "{")
                for item_index, item in enumerate(value.items):
                    sep = ", " if item_index else ""
                    if value.kind == "list":
                        emit(sep + dumps(item))
                    else:
                        emit(sep + json.dumps(item[0]) + ": " + dumps(item[1]))
                emit("]" if value.kind == "list" else "}")
            else:
                emit(json.dumps(value))
        emit("}")
        data = "".join(buf).encode("utf-8")
        fh.write(data)
        written += len(data)
    return written


class AtomicZip:
    """A ZipFile written to NAME.partial and renamed on success, so an interrupted run never leaves a
    half-written archive under an official name."""

    def __init__(self, path: Path):
        self.path, self.tmp = path, path.with_name(path.name + ".partial")

    def __enter__(self) -> zipfile.ZipFile:
        self.zf = zipfile.ZipFile(self.tmp, "w")
        return self.zf

    def __exit__(self, exc_type, exc, tb) -> None:
        self.zf.close()
        if exc_type is None:
            os.replace(self.tmp, self.path)
        else:
            self.tmp.unlink(missing_ok=True)
