"""Checked access to the fields of a source record.

The official files hold integers for VQA and COCO ids and strings for questions, answers and
captions. Anything else (a null, a list where an object belongs, "x48" for an id) is a one-line
`SourceFormatError` naming the file and the record: never a bare ValueError from deep in a reader,
and never `str(None)` becoming the answer "None" of a training conversation. A question or a
training target that is empty or only whitespace is of the same kind: the official files hold none,
and it would become a turn with nothing to say.
"""

from typing import Any

from ..process.errors import SourceFormatError


def text(record: dict, key: str, filename: str, record_id) -> str:
    """A string field that must be present."""
    if key not in record:
        raise SourceFormatError(filename, f"missing field {key!r}", record_id)
    return _string(record[key], key, filename, record_id)


def nonblank_text(record: dict, key: str, filename: str, record_id) -> str:
    """A string field that must be present and hold more than whitespace (a question, a training target)."""
    value = text(record, key, filename, record_id)
    if not value.strip():
        raise blank(filename, key, value, record_id)
    return value


def blank(filename: str, key: str, value: str, record_id) -> SourceFormatError:
    """The error for a text that is empty or only whitespace where a turn needs words."""
    return SourceFormatError(filename, f"{key!r} is blank ({show_value(value)})", record_id)


def optional_text(record: dict, key: str, filename: str, record_id, default: str = "") -> str:
    """A string field that may be absent (then `default`), but is never null or another type."""
    if key not in record:
        return default
    return _string(record[key], key, filename, record_id)


def integer_id(record: dict, key: str, filename: str, record_id) -> str:
    """An id the official files write as a JSON integer, as its decimal string (the source spelling)."""
    if key not in record:
        raise SourceFormatError(filename, f"missing field {key!r}", record_id)
    value = record[key]
    # bool is an int in Python, but `true` is not an id.
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise SourceFormatError(filename, f"{key!r} must be a non-negative integer, got {show_value(value)}", record_id)
    return str(value)


def optional_object(record: dict, key: str, filename: str, record_id) -> dict:
    """An object field that may be absent (then empty)."""
    value = record.get(key, {})
    if not isinstance(value, dict):
        raise SourceFormatError(filename, f"{key!r} must be an object, got {show_value(value)}", record_id)
    return value


def _string(value: Any, key: str, filename: str, record_id) -> str:
    if not isinstance(value, str):
        raise SourceFormatError(filename, f"{key!r} must be a string, got {show_value(value)}", record_id)
    return value


def show_value(value: Any) -> str:
    """The offending value in JSON terms, cut short: the error stays one readable line."""
    if value is None:
        return "null"
    shown = repr(value)
    return shown if len(shown) <= 60 else shown[:57] + "..."
