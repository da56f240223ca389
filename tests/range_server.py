"""A file server on 127.0.0.1 for the HTTP tests, with a log of every request.

`FileServer(directory)` serves a flat directory (a source mirror) and answers single-range
`Range: bytes=...` requests with 206 Partial Content, as S3, nginx or the Hub do.
`FileServer(directory, ranges=False)` is Python's own `http.server` handler, which ignores Range
and answers 200 with the whole file: the server people start with `python -m http.server`.

Every request is logged (method, path, Range header, status, body bytes actually written), so a
test can prove that image archives were read by range requests and never downloaded whole.

`FileServer(directory, faults=Faults(...))` injects faults, deterministically for a seed: a share of
requests answered 503 (with Retry-After) or 500, bodies cut short (connection reset, or closed after
fewer bytes than Content-Length promised), or stalled beyond the client's read timeout. Each request
(method, path, range) is faulty on at most `Faults.max_faults_per_request` of its tries, so a client
within that retry budget always gets through. `Faults(status=503)` answers every request so.
`server.faults` may be changed while the server runs (an outage that ends, a file that changes).
`FileServer(directory, handler=stalling_handler(...))` holds one request back until the test releases it.
"""

import email.utils
import functools
import hashlib
import http.server
import os
import re
import shutil
import socket
import struct
import threading
import time
import urllib.parse
from collections import Counter
from dataclasses import dataclass, field
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


@dataclass
class Faults:
    """Which share of requests go wrong, and how; decided by a hash of (seed, request, try number)."""

    seed: int = 0
    unavailable: float = 0.0  # 503 with Retry-After
    error: float = 0.0  # 500
    reset: float = 0.0  # connection reset part-way through the body
    truncate: float = 0.0  # connection closed after part of the promised body
    stall: float = 0.0  # part of the body, then silence for `stall_seconds`, then a close
    stall_seconds: float = 1.0
    retry_after: str = "1"
    max_faults_per_request: int = 2
    status: Optional[int] = None  # answer every request with this status (an outage, a 403 host)
    paths: Optional[frozenset] = None  # only these file names are faulty (None: all)
    methods: Optional[frozenset] = None  # only these methods are faulty (None: all)
    body_limit: Optional[int] = None  # per file: after this many body bytes in all, every GET is reset
    throttle: float = 0.0  # seconds of sleep after each 64 kB of body: a slow link, to kill a client mid-file
    _tries: Counter = field(default_factory=Counter)
    _body_bytes: Counter = field(default_factory=Counter)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def applies_to(self, name: str) -> bool:
        return self.paths is None or name in self.paths

    def choose(self, method: str, name: str, byte_range: Optional[str]) -> Optional[str]:
        """The fault for this try of this request, or None."""
        if not self.applies_to(name) or (self.methods is not None and method not in self.methods):
            return None
        if self.status is not None:
            return "status"
        key = (method, name, byte_range)
        with self._lock:
            self._tries[key] += 1
            attempt = self._tries[key]
        if attempt > self.max_faults_per_request:
            return None
        digest = hashlib.sha256(repr((self.seed, key, attempt)).encode()).digest()
        draw = struct.unpack(">Q", digest[:8])[0] / 2**64
        kinds = [("unavailable", self.unavailable), ("error", self.error)]
        if method == "GET":
            kinds += [("reset", self.reset), ("truncate", self.truncate), ("stall", self.stall)]
        for kind, share in kinds:
            if draw < share:
                return kind
            draw -= share
        return None

    def allow_body(self, name: str, length: int) -> int:
        """How many of `length` more body bytes of `name` may still go out under `body_limit`."""
        if self.body_limit is None or not self.applies_to(name):
            return length
        with self._lock:
            allowed = max(0, min(length, self.body_limit - self._body_bytes[name]))
            self._body_bytes[name] += allowed
        return allowed


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
        faults: Optional[Faults] = self.server.faults
        name = urllib.parse.unquote(urllib.parse.urlsplit(self.path).path).lstrip("/")
        fault = faults.choose(self.command, name, self.headers.get("Range")) if faults else None
        if fault == "status":
            outcome[0] = faults.status
            self._send_empty(faults.status, {"Retry-After": faults.retry_after} if faults.status in (429, 503) else None)
            return
        if fault in ("unavailable", "error"):
            outcome[0] = 503 if fault == "unavailable" else 500
            self._send_empty(outcome[0], {"Retry-After": faults.retry_after} if fault == "unavailable" else None)
            return
        path = self._file_path()
        if path is None:
            outcome[0] = 404
            self._send_empty(404)
            return
        stat = os.stat(path)
        size = stat.st_size
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
        # Validators, as real servers send them: a changed file has another ETag.
        self.send_header("ETag", f'"{stat.st_size:x}-{stat.st_mtime_ns:x}"')
        self.send_header("Last-Modified", email.utils.formatdate(stat.st_mtime, usegmt=True))
        if span:
            self.send_header("Content-Range", f"bytes {start}-{end - 1}/{size}")
        self.end_headers()
        if send_body:
            length = end - start
            allowed = faults.allow_body(name, length) if faults else length
            cut = length // 2 if fault in ("reset", "truncate", "stall") else allowed
            writer = _CountingWriter(self.wfile)
            try:
                with open(path, "rb") as handle:
                    handle.seek(start)
                    _copy(handle, writer, min(cut, allowed), faults.throttle if faults else 0.0)
                self.wfile.flush()
            finally:
                outcome[1] = writer.written
            if fault == "stall":
                time.sleep(faults.stall_seconds)
            if fault == "reset" or allowed < length:
                self._reset_connection()
            elif fault in ("truncate", "stall"):
                self.close_connection = True  # a clean close, short of the promised Content-Length

    def _reset_connection(self) -> None:
        """Abort with a TCP RST (SO_LINGER 0), as a crashed server or a dropped link does."""
        self.close_connection = True
        try:
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass

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


def stalling_handler(name: str, stall_at: int, stalled: threading.Event, release: threading.Event):
    """Serves normally, except that the first GET of `name` from byte `stall_at` never gets an answer.

    By offset, not by arrival: downloads keep several chunks in flight and write them in order, so
    exactly the bytes before `stall_at` reach the disk."""

    class Handler(RangeRequestHandler):
        done = False
        lock = threading.Lock()

        def _respond(self, send_body, outcome):
            from_byte = (self.headers.get("Range") or "bytes=0-")[len("bytes="):].split("-")[0]
            if send_body and self.path == f"/{name}" and from_byte == str(stall_at):
                with Handler.lock:
                    stall, Handler.done = not Handler.done, True
                if stall:
                    stalled.set()
                    release.wait(60)
                    raise ConnectionResetError("the test ends the stalled request")
            super()._respond(send_body, outcome)

    return Handler


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


def _copy(source, writer: _CountingWriter, length: int, pause: float = 0.0) -> None:
    while length > 0:
        chunk = source.read(min(_CHUNK, length))
        if not chunk:
            break
        writer.write(chunk)
        length -= len(chunk)
        if pause:
            writer.stream.flush()
            time.sleep(pause)


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, handler, directory: str, faults: Optional[Faults] = None):
        super().__init__(("127.0.0.1", 0), handler)
        self.directory = directory
        self.faults = faults
        self.log: list[LoggedRequest] = []
        self.in_flight = 0  # requests being answered, not yet logged
        self.log_changed = threading.Condition()

    def handle_error(self, request, client_address):
        # A client that hangs up on a kept-alive connection (or a reset we caused) is not news.
        import sys

        if not isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            super().handle_error(request, client_address)


class FileServer:
    """`with FileServer(dir) as server:` serves `dir` at `server.url` until the block ends."""

    def __init__(self, directory, ranges: bool = True, handler=None, faults: Optional[Faults] = None):
        directory = os.path.abspath(str(directory))
        if handler is None:
            handler = RangeRequestHandler if ranges else functools.partial(PlainRequestHandler, directory=directory)
        self._server = _Server(handler, directory, faults)
        # A short poll interval: shutdown() waits for the next poll (0.5 s by default).
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), name="file-server", daemon=True)

    @property
    def faults(self) -> Optional[Faults]:
        return self._server.faults

    @faults.setter
    def faults(self, faults: Optional[Faults]) -> None:
        self._server.faults = faults

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

