"""Resumable, verified downloads (`arr_coc.network.download`) and the retry policy (`arr_coc.network.retry`), against
a real server on 127.0.0.1 whose log shows which bytes every run asked for."""

import dataclasses
import email.utils
import os
import signal
import subprocess
import sys
import threading
import time
import zipfile

import aiohttp
import pytest
import tenacity
from helpers import ROOT
from multidict import CIMultiDict, CIMultiDictProxy
from range_server import Faults, FileServer, stalling_handler

from arr_coc.network import download, retry
from arr_coc.network.retry import NetworkError, NotThere, RetryPolicy
from arr_coc.process.errors import SourceFormatError
from arr_coc.process.interrupts import Interrupted

CHUNK = 64 * 1024
FAST = RetryPolicy(max_attempts=3, backoff_initial=0.001, backoff_max=0.01, read_timeout=2.0)


def write_zip(path, payload_bytes: int, seed: int) -> bytes:
    """A stored (uncompressed) zip of random-looking bytes; returns the file's bytes."""
    import random

    payload = random.Random(seed).randbytes(payload_bytes)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as archive:
        archive.writestr("payload.bin", payload)
    with open(path, "rb") as handle:
        return handle.read()


def get_spans(server: FileServer, name: str) -> list[tuple[int, int]]:
    """(start, end inclusive) of every ranged GET of `name`, in order; a retried one once."""
    spans = []
    for entry in server.requests(name):
        if entry.method == "GET":
            assert entry.range and entry.range.startswith("bytes="), entry
            first, last = entry.range[len("bytes="):].split("-")
            if (int(first), int(last)) not in spans:  # a busy machine may time a request out and retry it
                spans.append((int(first), int(last)))
    return spans


@pytest.fixture
def small_chunks(monkeypatch):
    monkeypatch.setattr(download, "CHUNK_SIZE", CHUNK)


@pytest.fixture
def one_chunk_at_a_time(monkeypatch):
    """Where a test needs to know exactly which chunk an outage hits."""
    monkeypatch.setattr(download, "PARALLEL_CHUNKS", 1)


@pytest.fixture
def served(tmp_path):
    folder = tmp_path / "served"
    folder.mkdir()
    content = write_zip(folder / "archive.zip", 20 * CHUNK, seed=1)
    return folder, content


def partial_of(url: str, cache) -> str:
    return download.cached_path(url, str(cache)) + download.INCOMPLETE_SUFFIX


def test_outage_mid_file_resumes_with_only_the_missing_range(served, small_chunks, one_chunk_at_a_time, tmp_path):
    folder, content = served
    cache = tmp_path / "cache"
    limit = 7 * CHUNK + 1000  # the server goes dark part-way through the eighth chunk
    with FileServer(folder, faults=Faults(body_limit=limit)) as server:
        url = f"{server.url}/archive.zip"
        with pytest.raises(NetworkError) as failure:
            download.cached_download(url, str(cache), policy=FAST, progress=False)
        assert str(failure.value).startswith(f"{url} bytes {7 * CHUNK}-{8 * CHUNK - 1}: network read failed after 3 attempts: ")
        assert "\n" not in str(failure.value)
        have = os.path.getsize(partial_of(url, cache))
        assert have == 7 * CHUNK  # every whole chunk that arrived is kept
        assert not os.path.exists(download.cached_path(url, str(cache)))

        server.faults = None  # the server is back
        server.clear_log()
        path = download.cached_download(url, str(cache), policy=FAST, progress=False)
        assert open(path, "rb").read() == content
        spans = get_spans(server, "archive.zip")
        assert spans[0][0] == have and min(start for start, _ in spans) == have  # nothing before the partial again
        assert sum(end - start + 1 for start, end in spans) == len(content) - have  # each missing byte once
        assert not os.path.exists(partial_of(url, cache))
        assert not os.path.exists(partial_of(url, cache).replace(download.INCOMPLETE_SUFFIX, download.SIDECAR_SUFFIX))

        server.clear_log()  # a finished download is revalidated: one HEAD, not one byte of body
        assert download.cached_download(url, str(cache), policy=FAST, progress=False) == path
        assert [(entry.method, entry.bytes_sent) for entry in server.requests()] == [("HEAD", 0)]


def test_killed_client_resumes_from_the_bytes_on_disk(served, small_chunks, tmp_path):
    folder, content = served
    cache = tmp_path / "cache"
    with FileServer(folder, faults=Faults(throttle=0.2)) as server:  # 20 chunks, 4 in flight: about a second
        url = f"{server.url}/archive.zip"
        code = (
            f"import sys; sys.path.insert(0, {ROOT!r}); from arr_coc.network import download; download.CHUNK_SIZE = {CHUNK}; "
            f"download.cached_download({url!r}, {str(cache)!r}, progress=False)"
        )
        child = subprocess.Popen([sys.executable, "-c", code])
        partial = partial_of(url, cache)
        deadline = time.monotonic() + 60
        while not (os.path.exists(partial) and os.path.getsize(partial) >= 4 * CHUNK):
            assert child.poll() is None and time.monotonic() < deadline, "the download ended before it could be killed"
            time.sleep(0.01)
        child.send_signal(signal.SIGKILL)
        child.wait()
        have = os.path.getsize(partial)
        assert 4 * CHUNK <= have < len(content) and have % CHUNK == 0

        server.faults = None
        server.clear_log()
        path = download.cached_download(url, str(cache), policy=FAST, progress=False)
        assert open(path, "rb").read() == content
        spans = get_spans(server, "archive.zip")
        assert min(start for start, _ in spans) == have
        assert sum(end - start + 1 for start, end in spans) == len(content) - have


def test_parallel_chunks_are_written_in_order(served, small_chunks, tmp_path):
    folder, content = served
    with FileServer(folder, faults=Faults(throttle=0.01)) as server:
        path = download.cached_download(f"{server.url}/archive.zip", str(tmp_path), policy=FAST, progress=False)
        assert open(path, "rb").read() == content
        spans = get_spans(server, "archive.zip")
        assert len(spans) == 21 and sorted(spans) == [(start, min(start + CHUNK, len(content)) - 1) for start in range(0, len(content), CHUNK)]


def test_an_interrupt_that_a_chunk_thread_takes_stops_the_download_at_once(served, small_chunks, tmp_path, monkeypatch):
    # Linux gives a process's signal to whichever thread suits it, and Python runs the handler in the
    # main thread only, once that thread is back in Python code: here the thread of a chunk that never
    # arrives takes it while the main thread waits for that very chunk (an untimed wait: for ever).
    folder, content = served
    cache = tmp_path / "cache"
    stalled, release = threading.Event(), threading.Event()
    signalled = []
    main = threading.main_thread().ident
    real_span_fetcher = download._span_fetcher

    def span_fetcher(*args):
        fetch = real_span_fetcher(*args)

        def fetch_taking_the_signal(start, end):
            if start == 2 * CHUNK:
                deadline = time.monotonic() + 30
                while not (os.path.exists(partial) and os.path.getsize(partial) == 2 * CHUNK
                           and sys._current_frames()[main].f_code.co_name == "wait") and time.monotonic() < deadline:
                    time.sleep(0.01)
                time.sleep(0.1)  # the main thread is blocked in that wait by now, not on its way in
                signalled.append(time.monotonic())
                signal.pthread_kill(threading.get_ident(), signal.SIGUSR1)
            return fetch(start, end)

        return fetch_taking_the_signal

    def interrupted(signum, frame):
        raise Interrupted(signum)

    monkeypatch.setattr(download, "_span_fetcher", span_fetcher)
    previous = signal.signal(signal.SIGUSR1, interrupted)
    give_up = threading.Timer(10, release.set)  # so that a failure ends
    give_up.start()
    try:
        with FileServer(folder, handler=stalling_handler("archive.zip", 2 * CHUNK, stalled, release)) as server:
            url = f"{server.url}/archive.zip"
            partial = partial_of(url, cache)
            with pytest.raises(Interrupted):  # (a read timeout far away: the chunk does not end by itself)
                download.cached_download(url, str(cache), policy=dataclasses.replace(FAST, read_timeout=60), progress=False)
            stopped_after = time.monotonic() - signalled[0]
            assert stalled.is_set() and not release.is_set()
            release.set()
            for thread in threading.enumerate():  # the chunks left in flight end before the server does
                if thread.name == "download":
                    thread.join(10)
    finally:
        release.set()
        give_up.cancel()
        signal.signal(signal.SIGUSR1, previous)
    assert stopped_after < 2
    assert open(partial, "rb").read() == content[: 2 * CHUNK]  # the chunks before it, for the resume


def test_a_file_changed_on_the_server_is_downloaded_again_whole(served, small_chunks, one_chunk_at_a_time, tmp_path):
    folder, _ = served
    cache = tmp_path / "cache"
    with FileServer(folder, faults=Faults(body_limit=5 * CHUNK)) as server:
        url = f"{server.url}/archive.zip"
        with pytest.raises(NetworkError):
            download.cached_download(url, str(cache), policy=FAST, progress=False)
        assert os.path.getsize(partial_of(url, cache)) == 5 * CHUNK

        changed = write_zip(folder / "archive.zip", 23 * CHUNK, seed=2)  # new ETag, new size
        server.faults = None
        server.clear_log()
        path = download.cached_download(url, str(cache), policy=FAST, progress=False)
        assert open(path, "rb").read() == changed  # not the old first five chunks plus the new rest
        spans = get_spans(server, "archive.zip")
        assert spans[0][0] == 0 and sum(end - start + 1 for start, end in spans) == len(changed)


def test_faults_within_the_budget_give_the_exact_file(served, small_chunks, tmp_path):
    folder, content = served
    faults = Faults(seed=3, unavailable=0.15, error=0.15, reset=0.15, truncate=0.15, stall=0.05, stall_seconds=0.6)
    policy = RetryPolicy(max_attempts=3, backoff_initial=0.001, backoff_max=0.01, read_timeout=0.3)
    with FileServer(folder, faults=faults) as server:
        path = download.cached_download(f"{server.url}/archive.zip", str(tmp_path / "cache"), policy=policy, progress=False)
        assert open(path, "rb").read() == content
        log = server.requests("archive.zip")
        statuses = {entry.status for entry in log}
        assert {500, 503} <= statuses  # the faults did happen
        assert any(entry.status == 206 and entry.bytes_sent < CHUNK // 2 + 1 for entry in log)  # cut-off bodies too


def test_a_zip_that_does_not_open_is_not_accepted(tmp_path):
    folder = tmp_path / "served"
    folder.mkdir()
    (folder / "broken.zip").write_bytes(b"this is not a zip archive" * 100)
    with FileServer(folder) as server:
        url = f"{server.url}/broken.zip"
        with pytest.raises(SourceFormatError, match=r"broken\.zip: the downloaded archive does not open as a zip"):
            download.cached_download(url, str(tmp_path / "cache"), policy=FAST, progress=False)
    assert not os.path.exists(download.cached_path(url, str(tmp_path / "cache")))
    assert not os.path.exists(partial_of(url, tmp_path / "cache"))


def test_a_missing_file_is_not_there_and_a_forbidden_one_is_a_network_error(served, tmp_path):
    folder, _ = served
    with FileServer(folder) as server:
        with pytest.raises(NotThere, match="404"):
            download.cached_download(f"{server.url}/absent.zip", str(tmp_path), policy=FAST, progress=False)
        server.faults = Faults(status=403)
        with pytest.raises(NetworkError, match=r"archive\.zip: network read failed after 1 attempt: HTTP 403 Forbidden$"):
            download.cached_download(f"{server.url}/archive.zip", str(tmp_path), policy=FAST, progress=False)
        assert [e.method for e in server.requests("archive.zip")] == ["HEAD", "GET"]  # fsspec: HEAD, then a GET; never retried


def test_cache_names_are_one_per_url():
    first = download.cached_path("https://a.example/x/images.zip", "/cache")
    assert first == download.cached_path("https://a.example/x/images.zip", "/cache")
    assert first != download.cached_path("https://b.example/x/images.zip", "/cache")
    assert first.endswith("-images.zip") and os.path.dirname(first) == "/cache"


# -- the retry policy ------------------------------------------------------------------------------


def response_error(status: int, headers: dict | None = None) -> aiohttp.ClientResponseError:
    return aiohttp.ClientResponseError(None, (), status=status, message="x", headers=CIMultiDictProxy(CIMultiDict(headers or {})))


@pytest.mark.parametrize(
    "error, retryable",
    [
        (response_error(503), True),
        (response_error(500), True),
        (response_error(429), True),
        (response_error(404), False),
        (response_error(403), False),
        (aiohttp.ServerDisconnectedError(), True),
        (aiohttp.ClientPayloadError("cut"), True),
        (TimeoutError(), True),
        (ConnectionRefusedError(), True),
        (retry.TruncatedBody("short"), True),
        (ValueError("bad data"), False),
        (FileNotFoundError("a local path"), False),
    ],
)
def test_what_is_retried(error, retryable):
    assert retry.is_retryable(error) is retryable


def test_fsspecs_not_found_for_a_failed_head_is_judged_by_the_real_status():
    for cause, retryable in ((response_error(503), True), (aiohttp.ClientConnectorError.__new__(aiohttp.ClientConnectorError), True), (response_error(404), False)):
        try:
            try:
                raise cause
            except Exception as error:
                raise FileNotFoundError("http://host/x.jpg") from error
        except FileNotFoundError as wrapped:
            assert retry.is_retryable(wrapped) is retryable


def wait_after(error: BaseException, policy: RetryPolicy) -> float:
    state = tenacity.RetryCallState(tenacity.Retrying(), fn=None, args=(), kwargs={})
    state.attempt_number = 1
    state.set_exception((type(error), error, None))
    return retry._wait(policy)(state)


def test_retry_after_is_honoured_up_to_backoff_max():
    tiny = dict(backoff_initial=0.001, read_timeout=1.0)
    assert wait_after(response_error(503, {"Retry-After": "30"}), RetryPolicy(backoff_max=45, **tiny)) == 30
    assert wait_after(response_error(503, {"Retry-After": "30"}), RetryPolicy(backoff_max=10, **tiny)) == 10
    in_a_minute = email.utils.formatdate(time.time() + 60, usegmt=True)
    assert 50 < wait_after(response_error(429, {"Retry-After": in_a_minute}), RetryPolicy(backoff_max=120, **tiny)) <= 60
    assert wait_after(response_error(503), RetryPolicy(backoff_max=10, **tiny)) <= 0.001


def test_the_policy_comes_from_the_environment_and_flags(monkeypatch):
    monkeypatch.setenv("ARR_COC_MAX_RETRIES", "3")
    monkeypatch.setenv("ARR_COC_RETRY_MAX_SECONDS", "12.5")
    monkeypatch.setenv("ARR_COC_READ_TIMEOUT", "7")
    policy = RetryPolicy.from_env()
    assert (policy.max_attempts, policy.max_retries, policy.max_seconds, policy.read_timeout) == (4, 3, 12.5, 7.0)
    assert RetryPolicy.from_env(max_retries=0, max_seconds=None).max_attempts == 1
    assert RetryPolicy.from_env(max_retries=0, max_seconds=None).max_seconds == 12.5
    assert RetryPolicy.from_env(**{}) == RetryPolicy(**{"max_attempts": 4, "max_seconds": 12.5, "read_timeout": 7.0})
    monkeypatch.setenv("ARR_COC_MAX_RETRIES", "many")
    with pytest.raises(ValueError, match="ARR_COC_MAX_RETRIES='many'"):
        RetryPolicy.from_env()


def test_attempts_are_bounded_by_count_and_by_time():
    calls = []

    def failing():
        calls.append(time.monotonic())
        raise aiohttp.ServerDisconnectedError()

    with pytest.raises(NetworkError, match=r"^http://h/f bytes 0-9: network read failed after 4 attempts: ServerDisconnectedError"):
        retry.with_retries(failing, url="http://h/f", byte_range=(0, 10), policy=RetryPolicy(max_attempts=4, backoff_initial=0, backoff_max=0))
    assert len(calls) == 4
    calls.clear()
    with pytest.raises(NetworkError):
        retry.with_retries(failing, url="http://h/f", policy=RetryPolicy(max_attempts=1000, max_seconds=0.2, backoff_initial=0.05, backoff_max=0.05))
    assert 1 < len(calls) < 1000 and calls[-1] - calls[0] < 1.0


def test_network_errors_survive_a_trip_between_processes():
    import pickle

    error = NetworkError("http://h/images.zip", (5, 10), "HTTP 503 Service Unavailable", attempts=8, status=503)
    copy = pickle.loads(pickle.dumps(error))
    assert str(copy) == str(error) == "http://h/images.zip bytes 5-9: network read failed after 8 attempts: HTTP 503 Service Unavailable"
    assert isinstance(pickle.loads(pickle.dumps(NotThere("http://h/x.jpg"))), FileNotFoundError)


def test_an_archive_whose_head_fails_is_a_network_error_not_a_missing_file(served):
    """fsspec reports any failed HEAD as FileNotFoundError; the real status decides."""
    from arr_coc.network import remote

    folder, _ = served
    with FileServer(folder, faults=Faults(status=503)) as server:
        with pytest.raises(NetworkError, match=r"/archive\.zip: network read failed after 3 attempts: HTTP 503 Service Unavailable$"):
            remote.open_zip(f"{server.url}/archive.zip", policy=FAST)
        assert [e.method for e in server.requests()] == ["HEAD", "GET"] * 3
        server.faults = None
        with pytest.raises(NotThere, match=r"/absent\.zip: not found on the server \(HTTP 404\)"):
            remote.open_zip(f"{server.url}/absent.zip", policy=FAST)
