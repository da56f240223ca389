"""Incremental JSON reading: records one at a time, never a whole annotation file in memory.

`json.load` of the real GQA train file (about 1 GB) or the VQAv2 train annotations (356 MB) costs
5-9x the file size in RAM. The readers here walk the top-level object and its record lists
themselves and hand each record to the C scanner of the standard `json` module
(`JSONDecoder.scan_once`), over a window of about one megabyte of the stream: memory stays at a few
MB, and records parse about 1.5x faster than with ijson's `kvitems`/`items` (yajl2_c), which build
each record from parser events.
"""

import codecs
import json
import re
import zipfile
import zlib
from typing import Any, BinaryIO, Iterator, Optional

import ijson

from ..process.errors import SourceFormatError

CHUNK_BYTES = 1 << 20
_WHITESPACE = re.compile(r"[ \t\n\r]*")
# The fast path's tokens: a plain key (no escapes) up to its colon, and what may follow a value.
_PLAIN_KEY = re.compile(r'[ \t\n\r]*"([^"\\\x00-\x1f]*)"[ \t\n\r]*:[ \t\n\r]*')
_AFTER_MEMBER = re.compile(r"[ \t\n\r]*([,}])")
_AFTER_ITEM = re.compile(r"[ \t\n\r]*([,\]])")
# A scan error this close to the end of the window may just mean the window cut the record.
_CUT_MARGIN = 8


class InvalidJSON(ValueError):
    pass


class InvalidUTF8(InvalidJSON):
    """A byte that is not UTF-8, at its offset from the start of the stream."""

    def __init__(self, offset: int, byte: int):
        super().__init__(f"byte 0x{byte:02x} at byte offset {offset} is not valid UTF-8")


class WrongShape(ValueError):
    """Valid JSON, but not the layout the reader needs (a missing record list, a list for an object)."""


def _reject_constant(name: str):
    raise InvalidJSON(f"{name} is not valid JSON")


# NaN and Infinity are Python extensions, not JSON: rejected, as ijson (yajl) rejects them.
_scan_once = json.JSONDecoder(parse_constant=_reject_constant).scan_once


def iter_list_items(stream: BinaryIO, key: str, filename: str) -> Iterator[Any]:
    """Yield the items of the top-level list `key` (VQA `questions`, COCO `images`, ...)."""
    yield from _guarded(_list_items_of(_Window(stream), key), filename)


def iter_array_items(stream: BinaryIO, filename: str) -> Iterator[Any]:
    """Yield the items of a top-level list (Visual Genome's image_data.json)."""
    yield from _guarded(_top_level_items(_Window(stream)), filename)


def iter_dict_items(stream: BinaryIO, filename: str) -> Iterator[tuple[str, Any]]:
    """Yield (key, value) of a top-level object (GQA: question id -> question)."""
    yield from _guarded(_members_of(_Window(stream)), filename)


def read_value(stream: BinaryIO, key: str, filename: str) -> Optional[Any]:
    """Return the top-level value `key` (e.g. OK-VQA's `question_types` map), or None if absent."""
    for value in _guarded(ijson.items(stream, key, use_float=True), filename):
        return value
    return None


class _Window:
    """A sliding window of decoded text over a byte stream, with the scanner's position in it."""

    def __init__(self, stream: BinaryIO):
        self.stream = stream
        self.decoder = codecs.getincrementaldecoder("utf-8")()  # strict: invalid UTF-8 is an error
        self.text = ""
        self.pos = 0
        self.eof = False
        self.bytes_read = 0
        self.bad_byte: Optional[InvalidUTF8] = None  # raised once the scanner reaches it

    def more(self) -> bool:
        """Append the next bytes to the window, dropping what lies before `pos`; False at the end.

        Reads at least as much as the window already holds from `pos`, so a value that spans many
        reads costs linear, not quadratic, copying.
        """
        text = ""
        while not text:  # a read may end inside a multi-byte character
            if self.bad_byte is not None:
                raise self.bad_byte
            if self.eof:
                return False  # the window stays as it is: a caller may hold offsets into it
            data = self.stream.read(max(CHUNK_BYTES, len(self.text) - self.pos))
            self.eof = not data
            text = self._decode(data)
        self.text = self.text[self.pos :] + text
        self.pos = 0
        return True

    def _decode(self, data: bytes) -> str:
        """The text of `data`; at an invalid byte, the text before it, and the error for later.

        The error waits until the scanner has used up the valid text, so the records before the bad
        byte are read as usual and the error names the record that holds it, not a window's start.
        """
        buffered = len(self.decoder.getstate()[0])  # bytes of a character cut by the previous read
        try:
            return self.decoder.decode(data, final=self.eof)
        except UnicodeDecodeError as error:
            self.bad_byte = InvalidUTF8(self.bytes_read - buffered + error.start, error.object[error.start])
            self.eof = True
            return error.object[: error.start].decode("utf-8")
        finally:
            self.bytes_read += len(data)

    def peek(self) -> str:
        """The next non-whitespace character ("" at the end of the stream), not consumed."""
        while True:
            self.pos = _WHITESPACE.match(self.text, self.pos).end()
            if self.pos < len(self.text):
                return self.text[self.pos]
            if not self.more():
                return ""

    def expect(self, char: str) -> None:
        found = self.peek()
        if found != char:
            raise InvalidJSON(f"expected {char!r}, found {found or 'the end of the data'!r}")
        self.pos += 1

    def value(self) -> Any:
        """Scan one complete JSON value, reading more of the stream while the window cuts it."""
        self.peek()
        while True:
            try:
                value, end = _scan_once(self.text, self.pos)
            except StopIteration as stop:
                if stop.value >= len(self.text) - _CUT_MARGIN and self.more():
                    continue
                raise InvalidJSON(f"expecting a value at character {stop.value} of the window") from None
            except json.JSONDecodeError as error:
                cut = error.pos >= len(self.text) - _CUT_MARGIN or error.msg.startswith("Unterminated string")
                if cut and self.more():
                    continue
                raise InvalidJSON(error.msg) from None
            # A number that ends near the window's end may go on in the next read ("3." of "3.5");
            # before an invalid byte the valid text is all there is.
            if end > len(self.text) - _CUT_MARGIN and self.bad_byte is None and self.more():
                continue
            self.pos = end
            return value

    def end(self) -> None:
        """Only whitespace may follow the top-level value."""
        if self.peek():
            raise InvalidJSON("unexpected data after the top-level value")


def _object_keys(window: _Window) -> Iterator[str]:
    """Keys of the object at the window's position; the caller consumes each key's value."""
    window.expect("{")
    if window.peek() == "}":
        window.pos += 1
        return
    while True:
        key = _key(window)
        window.expect(":")
        yield key
        found = window.peek()
        window.pos += 1
        if found == "}":
            return
        if found != ",":
            raise InvalidJSON(f"expected ',' or '}}' after a member, found {found or 'the end of the data'!r}")


def _key(window: _Window) -> str:
    if window.peek() != '"':
        raise InvalidJSON(f"expected a string key, found {window.peek() or 'the end of the data'!r}")
    return window.value()


def _array_items(window: _Window) -> Iterator[Any]:
    window.expect("[")
    if window.peek() == "]":
        window.pos += 1
        return
    while True:
        fast = _fast_item(window)
        if fast is None:  # the window's end, or anything unusual: the exact path
            yield window.value()
            found = window.peek()
            window.pos += 1
        else:
            value, found = fast
            yield value
        if found == "]":
            return
        if found != ",":
            raise InvalidJSON(f"expected ',' or ']' after an item, found {found or 'the end of the data'!r}")


# Fast paths: one regex and one scan per record while the record lies well inside the window. They
# consume nothing unless the whole record and the separator after it parsed; otherwise the exact
# path above takes over from the same position (window ends, errors, escaped keys).


def _fast_item(window: _Window) -> Optional[tuple[Any, str]]:
    text = window.text
    start = _WHITESPACE.match(text, window.pos).end()
    try:
        value, end = _scan_once(text, start)
    except (StopIteration, ValueError):
        return None
    after = _AFTER_ITEM.match(text, end)
    if after is None or end > len(text) - _CUT_MARGIN:
        return None
    window.pos = after.end()
    return value, after.group(1)


def _fast_member(window: _Window) -> Optional[tuple[str, Any, str]]:
    text = window.text
    key = _PLAIN_KEY.match(text, window.pos)
    if key is None:
        return None
    try:
        value, end = _scan_once(text, key.end())
    except (StopIteration, ValueError):
        return None
    after = _AFTER_MEMBER.match(text, end)
    if after is None or end > len(text) - _CUT_MARGIN:
        return None
    window.pos = after.end()
    return key.group(1), value, after.group(1)


def _skip(window: _Window) -> None:
    """Consume one value without holding all of it when it is a list (COCO's `images` list)."""
    if window.peek() == "[":
        for _ in _array_items(window):
            pass
    else:
        window.value()


def _list_items_of(window: _Window, key: str) -> Iterator[Any]:
    """Items of the top-level object's list `key`, from every member so named (as ijson's `key.item`).

    A document without that list is an error, not an empty source: a file whose records sit under
    another key ("question" for "questions") would otherwise build with every item lost.
    """
    _require_object(window, f"an object with a {key!r} list")
    names = []
    for name in _object_keys(window):
        names.append(name)
        if name != key:
            _skip(window)
        elif window.peek() == "[":
            yield from _array_items(window)
        else:
            found = window.peek()
            _skip(window)
            raise WrongShape(f"{key!r} is {_kind(found)}, not a list")
    window.end()
    if key not in names:
        raise WrongShape(f"no top-level {key!r} list (top-level keys: {names[:10]})")


def _require_object(window: _Window, wanted: str) -> None:
    """The document must be an object; anything else is reported once it is known to be valid JSON."""
    found = window.peek()
    if found != "{":
        _skip(window)
        window.end()
        raise WrongShape(f"the top level is {_kind(found)}, not {wanted}")


def _kind(first_char: str) -> str:
    return {"[": "a list", '"': "a string", "t": "a boolean", "f": "a boolean", "n": "null", "{": "an object"}.get(
        first_char, "a number"
    )


def _top_level_items(window: _Window) -> Iterator[Any]:
    if window.peek() != "[":
        raise InvalidJSON(f"expected a list at the top level, found {window.peek() or 'the end of the data'!r}")
    yield from _array_items(window)
    window.end()


def _members_of(window: _Window) -> Iterator[tuple[str, Any]]:
    """Members of the top-level object, each yielded once the next key or the object's end has been
    read (as ijson's `kvitems` does, so a cut file fails after the same number of records)."""
    _require_object(window, "an object of records by id")
    window.expect("{")
    if window.peek() == "}":
        window.pos += 1
        window.end()
        return
    pending = None
    while True:
        fast = _fast_member(window)
        if fast is None:  # the window's end, or anything unusual: the exact path
            key = _key(window)
            if pending is not None:
                yield pending
            window.expect(":")
            pending = (key, window.value())
            found = window.peek()
            window.pos += 1
        else:
            key, value, found = fast
            if pending is not None:
                yield pending
            pending = (key, value)
        if found == "}":
            yield pending
            break
        if found != ",":
            raise InvalidJSON(f"expected ',' or '}}' after a member, found {found or 'the end of the data'!r}")
    window.end()


def _guarded(items: Iterator[Any], filename: str) -> Iterator[Any]:
    # Turn parser and archive errors into one line naming the file and where it broke, instead of a
    # traceback from deep inside the parser or zipfile.
    count = 0
    try:
        for item in items:
            count += 1
            yield item
    except WrongShape as error:
        raise SourceFormatError(filename, str(error)) from None
    except InvalidUTF8 as error:
        raise SourceFormatError(filename, f"{error}, in record {count} (counting from 0)") from None
    except (InvalidJSON, UnicodeDecodeError, RecursionError, ijson.JSONError) as error:
        raise SourceFormatError(filename, f"invalid or truncated JSON after {count} records ({error})") from None
    except (EOFError, OSError, zipfile.BadZipFile, zlib.error) as error:  # truncated or corrupt archive member
        raise SourceFormatError(filename, f"unreadable archive member after {count} records ({error})") from None
