"""A file server on 127.0.0.1 for the HTTP tests, with a log of every request.

`FileServer(directory)` serves a flat directory (a source mirror) and answers single-range
`Range: bytes=...` requests with 206 Partial Content, as S3, nginx or the Hub do.
`FileServer(directory, ranges=False)` is Python's own `http.server` handler, which ignores Range
and answers 200 with the whole file: the server people start with `python -m http.server`.

Every request is logged (method, path, Range header, status, body bytes actually written), so a
test can prove that image archives were read by range requests and never downloaded whole.
"""

import functools
import http.server
import os
import re
import shutil
import threading
import urllib.parse
from dataclasses import dataclass
from typing import Optional

_CHUNK = 64 * 1024
_SINGLE_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


@dataclass(frozen=True)
class LoggedRequest:
    method: str
    path: str  # without the query string, e.g. "/train2014.zip"
    range: Optional[str]  # the Range header as the client sent it
    status: int
    bytes_sent: int  # body bytes written before the response ended or the client hung up


class _CountingWriter:
    """Counts what reaches the socket, so a client hanging up early is measured right."""

    def __init__(self, stream):
        self.stream = stream
        self.written = 0

    def write(self, data) -> int:
        self.stream.write(data)
        self.written += len(data)
        return len(data)


class _LoggingMixin:
    """Quiet handlers that append one `LoggedRequest` per request to `self.server.log`."""

    # Headers and body are separate writes: without TCP_NODELAY, Nagle's algorithm and the
    # client's delayed ACK stall every response by ~40 ms.
    disable_nagle_algorithm = True

    def log_message(self, format, *args):  # noqa: A002 - BaseHTTPRequestHandler's signature
        pass  # the test reads the structured log instead of stderr

    def _begin(self) -> None:
        # Counted before any byte of the response goes out: a client that has its response may
        # ask for the log before this thread has written the entry (see FileServer.requests).
        with self.server.log_changed:
            self.server.in_flight += 1

    def _record(self, status: int, bytes_sent: int) -> None:
        path = urllib.parse.urlsplit(self.path).path
        entry = LoggedRequest(self.command, path, self.headers.get("Range"), status, bytes_sent)
        with self.server.log_changed:
            self.server.log.append(entry)
            self.server.in_flight -= 1
            self.server.log_changed.notify_all()


class RangeRequestHandler(_LoggingMixin, http.server.BaseHTTPRequestHandler):
    """GET and HEAD of the files directly inside `server.directory`, with single byte ranges."""

    protocol_version = "HTTP/1.1"  # keep-alive: fsspec/aiohttp reuse connections for range reads
    accept_ranges = "bytes"  # what HEAD and GET advertise; a subclass may say "none"

    def do_HEAD(self):
        self._serve(send_body=False)

    def do_GET(self):
        self._serve(send_body=True)

    def _serve(self, send_body: bool) -> None:
        self._begin()
        outcome = [500, 0]  # (status, body bytes), filled in as the response goes out
        try:
            self._respond(send_body, outcome)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # the client hung up: log what it got
        finally:
            self._record(*outcome)

    def _respond(self, send_body: bool, outcome: list) -> None:
        path = self._file_path()
        if path is None:
            outcome[0] = 404
            self._send_empty(404)
            return
        size = os.path.getsize(path)
        header = self.headers.get("Range")
        span = _parse_range(header, size) if header else None
        if span == "unsatisfiable":
            outcome[0] = 416
            self._send_empty(416, {"Content-Range": f"bytes */{size}"})
            return
        start, end = span if span else (0, size)  # an unparsable or multi-range header is ignored (RFC 9110)
        outcome[0] = 206 if span else 200
        self.send_response(outcome[0])
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(end - start))
        self.send_header("Accept-Ranges", self.accept_ranges)
        if span:
            self.send_header("Content-Range", f"bytes {start}-{end - 1}/{size}")
        self.end_headers()
        if send_body:
            writer = _CountingWriter(self.wfile)
            try:
                with open(path, "rb") as handle:
                    handle.seek(start)
                    _copy(handle, writer, end - start)
            finally:
                outcome[1] = writer.written

    def _file_path(self) -> Optional[str]:
        name = urllib.parse.unquote(urllib.parse.urlsplit(self.path).path).lstrip("/")
        # A mirror is flat: serve only plain files directly inside the directory.
        if not name or "/" in name or name in (".", ".."):
            return None
        path = os.path.join(self.server.directory, name)
        return path if os.path.isfile(path) else None

    def _send_empty(self, status: int, headers: Optional[dict] = None) -> None:
        self.send_response(status)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.send_header("Content-Length", "0")
        self.end_headers()


class PlainRequestHandler(_LoggingMixin, http.server.SimpleHTTPRequestHandler):
    """Python's `http.server` as it is (HTTP/1.0, Range ignored), plus the request log."""

    def send_response(self, code, message=None):
        self._status = code
        super().send_response(code, message)

    def do_GET(self):
        self._begin()
        self._status, self._body_bytes = None, 0
        try:
            super().do_GET()
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        finally:
            self._record(self._status, self._body_bytes)

    def do_HEAD(self):
        self._begin()
        self._status = None
        try:
            super().do_HEAD()
        finally:
            self._record(self._status, 0)

    def copyfile(self, source, outputfile):
        # The body's copy (headers are written before): count what reaches the socket.
        writer = _CountingWriter(outputfile)
        try:
            shutil.copyfileobj(source, writer, _CHUNK)
        finally:
            self._body_bytes = writer.written


def _parse_range(header: str, size: int):
    """(start, end_exclusive) of a single `bytes=` range, "unsatisfiable", or None to ignore it."""
    match = _SINGLE_RANGE.match(header.strip())
    if not match or match.groups() == ("", ""):
        return None
    first, last = match.groups()
    if first == "":  # suffix range: the last N bytes
        length = int(last)
        return (max(0, size - length), size) if length else "unsatisfiable"
    start = int(first)
    end = size if last == "" else min(size, int(last) + 1)
    if start >= size or start >= end:
        return "unsatisfiable"
    return start, end


def _copy(source, writer: _CountingWriter, length: int) -> None:
    while length > 0:
        chunk = source.read(min(_CHUNK, length))
        if not chunk:
            break
        writer.write(chunk)
        length -= len(chunk)


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, handler, directory: str):
        super().__init__(("127.0.0.1", 0), handler)
        self.directory = directory
        self.log: list[LoggedRequest] = []
        self.in_flight = 0  # requests being answered, not yet logged
        self.log_changed = threading.Condition()


class FileServer:
    """`with FileServer(dir) as server:` serves `dir` at `server.url` until the block ends."""

    def __init__(self, directory, ranges: bool = True, handler=None):
        directory = os.path.abspath(str(directory))
        if handler is None:
            handler = RangeRequestHandler if ranges else functools.partial(PlainRequestHandler, directory=directory)
        self._server = _Server(handler, directory)
        # A short poll interval: shutdown() waits for the next poll (0.5 s by default).
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), name="file-server", daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def requests(self, name: Optional[str] = None) -> list[LoggedRequest]:
        """The requests so far, all of them or those for one file name, once none is half-logged."""
        with self._server.log_changed:
            self._server.log_changed.wait_for(lambda: self._server.in_flight == 0, timeout=10)
            log = list(self._server.log)
        return log if name is None else [entry for entry in log if entry.path == f"/{name}"]

    def clear_log(self) -> None:
        with self._server.log_changed:
            self._server.log_changed.wait_for(lambda: self._server.in_flight == 0, timeout=10)
            self._server.log.clear()

    def __enter__(self) -> "FileServer":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)

