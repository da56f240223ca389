"""One version of every downloaded file (`arr_coc.network.download`), against a server on 127.0.0.1
that changes, fixes, shrinks or re-serves its files: a cached file is revalidated and fetched again
when it changed, a partial file resumes only the same version (never by size alone, so `hf://`
mirrors resume by blob id / LFS sha256), a file that changes during its download is fetched again
once and then fails in one line, a server without Range support gets one whole GET, offline use is
asked for with HF_DATASETS_OFFLINE, and no lock or useless partial file is left behind."""

import hashlib
import logging
import os
import random
import socket
import zipfile

import fsspec
import pytest
from fsspec.implementations.http import HTTPFileSystem
from huggingface_hub.hf_api import BlobLfsInfo
from range_server import Faults, FileServer

from arr_coc.network import download, remote
from arr_coc.network.retry import NetworkError, RetryPolicy
from arr_coc.network.versions import ChangedOnServer, validator

CHUNK = 64 * 1024
FAST = RetryPolicy(max_attempts=3, backoff_initial=0.001, backoff_max=0.01, read_timeout=2.0)


def zip_bytes(payload_bytes: int, seed: int) -> bytes:
    """A stored zip of random-looking bytes: any mix of two such files fails to open or differs."""
    import io

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED) as archive:
        archive.writestr("payload.bin", random.Random(seed).randbytes(payload_bytes))
    return buffer.getvalue()


def replace(path, data: bytes) -> None:
    """A new version of a served file, written aside and renamed in, as a deploy does."""
    with open(f"{path}.new", "wb") as handle:
        handle.write(data)
    os.replace(f"{path}.new", path)


@pytest.fixture(autouse=True)
def small_chunks(monkeypatch):
    monkeypatch.setattr(download, "CHUNK_SIZE", CHUNK)
    monkeypatch.setattr(download, "PARALLEL_CHUNKS", 1)  # which chunk an outage hits is then known
    for variable in download.OFFLINE_VARIABLES:
        monkeypatch.delenv(variable, raising=False)


@pytest.fixture
def served(tmp_path):
    folder = tmp_path / "served"
    folder.mkdir()
    (folder / "archive.zip").write_bytes(zip_bytes(10 * CHUNK, seed=1))
    return folder


def fetch(url, cache) -> bytes:
    path = download.cached_download(url, str(cache), policy=FAST, progress=False)
    with open(path, "rb") as handle:
        return handle.read()


def gets(server, name="archive.zip"):
    return [entry for entry in server.requests(name) if entry.method == "GET"]


def leftovers(cache) -> set:
    return {name.split("-", 1)[1] for name in os.listdir(cache)} if os.path.isdir(cache) else set()


# -- the cache ---------------------------------------------------------------------------------------


def test_a_cached_file_changed_on_the_server_is_fetched_again(served, tmp_path, caplog):
    cache = tmp_path / "cache"
    with FileServer(served) as server:
        url = f"{server.url}/archive.zip"
        assert fetch(url, cache) == (served / "archive.zip").read_bytes()
        changed = zip_bytes(12 * CHUNK, seed=2)
        replace(served / "archive.zip", changed)
        server.clear_log()
        with caplog.at_level(logging.WARNING, logger="arr_coc.network.download"):
            assert fetch(url, cache) == changed  # not the old answers for good
        assert [record.getMessage() for record in caplog.records if "changed on the server since it was cached" in record.getMessage()]
        assert sum(entry.bytes_sent for entry in gets(server)) == len(changed)

        server.clear_log()  # the same version again: one HEAD, no body
        assert fetch(url, cache) == changed
        assert [entry.method for entry in server.requests()] == ["HEAD"]
    assert leftovers(cache) == {"archive.zip", "archive.zip" + download.VERSION_SUFFIX}


def test_a_file_that_failed_truncated_is_fetched_again_once_the_server_is_fixed(served, tmp_path):
    """A build that failed on a cut-off file must not fail the same way after the server is fixed."""
    whole = (served / "archive.zip").read_bytes()
    cache = tmp_path / "cache"
    replace(served / "archive.zip", whole[: len(whole) // 2])  # the server has a truncated copy
    with FileServer(served) as server:
        url = f"{server.url}/archive.zip"
        with pytest.raises(Exception) as failure:  # noqa: PT011 - whichever error: it must name the URL
            fetch(url, cache)
        assert url in str(failure.value) and "\n" not in str(failure.value)
        replace(served / "archive.zip", whole)  # fixed
        assert fetch(url, cache) == whole


def test_a_cached_file_without_a_version_record_is_fetched_again(served, tmp_path):
    cache = tmp_path / "cache"
    with FileServer(served) as server:
        url = f"{server.url}/archive.zip"
        path = download.cached_path(url, str(cache))
        os.makedirs(cache)
        with open(path, "wb") as handle:  # what an older build left: a file, no record of its version
            handle.write(b"stale bytes of some other version")
        assert fetch(url, cache) == (served / "archive.zip").read_bytes()


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_network_down_fails_naming_url_and_cache_unless_offline_use_is_asked_for(served, tmp_path, monkeypatch, caplog):
    cache = tmp_path / "cache"
    with FileServer(served) as server:
        url = f"{server.url}/archive.zip"
        content = fetch(url, cache)
    path = download.cached_path(url, str(cache))
    HTTPFileSystem.clear_instance_cache()  # no kept-alive connection to the stopped server's threads
    with pytest.raises(NetworkError) as failure:  # the server is gone: connection refused
        fetch(url, cache)
    message = str(failure.value)
    assert message.startswith(f"{url}: network read failed after 3 attempts: ") and "\n" not in message
    assert f"cannot check the cached copy {path}" in message and "HF_DATASETS_OFFLINE=1" in message

    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    with caplog.at_level(logging.WARNING, logger="arr_coc.network.download"):
        assert fetch(url, cache) == content
    assert any("offline (HF_DATASETS_OFFLINE)" in record.getMessage() and path in record.getMessage() for record in caplog.records)
    missing = f"http://127.0.0.1:{closed_port()}/absent.zip"
    with pytest.raises(FileNotFoundError, match=r"absent\.zip: not in the download cache .* offline use is on \(HF_DATASETS_OFFLINE=1\)$"):
        fetch(missing, cache)
    monkeypatch.delenv("HF_DATASETS_OFFLINE")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # huggingface_hub's own switch works too
    assert fetch(url, cache) == content


# -- resumes -----------------------------------------------------------------------------------------


def killed_download(url, cache, data: bytes, fields: dict) -> str:
    """What a download killed outright (SIGKILL) leaves: the first bytes and the record of their version."""
    path = download.cached_path(url, str(cache))
    os.makedirs(cache, exist_ok=True)
    with open(path + download.INCOMPLETE_SUFFIX, "wb") as handle:
        handle.write(data)
    download._write_json(path + download.SIDECAR_SUFFIX, {"url": url, "validator": fields})
    return path + download.INCOMPLETE_SUFFIX


def interrupted_download(server, url, cache, after: int) -> str:
    """A download that lost the server after `after` chunks: returns the partial file."""
    server.faults = Faults(body_limit=after * CHUNK + 10)
    with pytest.raises(NetworkError):
        fetch(url, cache)
    server.faults = None
    partial = download.cached_path(url, str(cache)) + download.INCOMPLETE_SUFFIX
    assert os.path.getsize(partial) == after * CHUNK
    return partial


def test_a_resume_with_only_the_size_as_validator_starts_from_zero(served, tmp_path):
    cache = tmp_path / "cache"
    with FileServer(served) as server:
        server.validators = False  # no ETag, no Last-Modified: the size is all the server says
        url = f"{server.url}/archive.zip"
        old = (served / "archive.zip").read_bytes()
        with pytest.raises(NetworkError):  # an outage: nothing to resume from is kept
            server.faults = Faults(body_limit=4 * CHUNK + 10)
            fetch(url, cache)
        server.faults = None
        assert leftovers(cache) == set()
        killed_download(url, cache, old[: 4 * CHUNK], {"size": str(len(old))})  # a SIGKILL leaves them all the same
        changed = zip_bytes(10 * CHUNK, seed=3)  # another version of the very same size
        replace(served / "archive.zip", changed)
        server.clear_log()
        assert fetch(url, cache) == changed  # not four chunks of the old version and six of the new
        assert min(int(entry.range.split("=")[1].split("-")[0]) for entry in gets(server)) == 0


def test_a_resume_of_the_same_version_fetches_only_the_rest(served, tmp_path):
    cache = tmp_path / "cache"
    with FileServer(served) as server:
        url = f"{server.url}/archive.zip"
        interrupted_download(server, url, cache, after=4)
        server.clear_log()
        assert fetch(url, cache) == (served / "archive.zip").read_bytes()
        assert sum(entry.bytes_sent for entry in gets(server)) == os.path.getsize(served / "archive.zip") - 4 * CHUNK


class StubHubFileSystem(fsspec.AbstractFileSystem):
    """`hf://` as huggingface_hub 2.4's HfFileSystem describes a repository file: `info()` gives
    name, size, type, blob_id (the git blob sha1), lfs (BlobLfsInfo: size, sha256, pointer_size),
    xet_hash, last_commit, security (hf_file_system.py, `_cache_info_from_path_info` for a RepoFile).
    Reads by range from bytes held here; `files` may be replaced between reads (a new commit)."""

    protocol = "hf"
    cachable = False
    files: dict = {}
    reads: list = []

    def info(self, path, **kwargs):
        name = self._strip_protocol(path)
        if name not in self.files:
            raise FileNotFoundError(path)
        data = self.files[name]
        blob_id = hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()
        lfs = BlobLfsInfo(size=len(data), sha256=hashlib.sha256(data).hexdigest(), pointer_size=134)
        return {"name": name, "size": len(data), "type": "file", "blob_id": blob_id, "lfs": lfs,
                "xet_hash": None, "last_commit": None, "security": None}

    def cat_file(self, path, start=None, end=None, **kwargs):
        self.reads.append((start, end))
        return self.files[self._strip_protocol(path)][start:end]


@pytest.fixture
def hub(monkeypatch):
    monkeypatch.setattr(StubHubFileSystem, "files", {})
    monkeypatch.setattr(StubHubFileSystem, "reads", [])
    saved = fsspec.get_filesystem_class("hf")
    fsspec.register_implementation("hf", StubHubFileSystem, clobber=True)
    yield StubHubFileSystem
    fsspec.register_implementation("hf", saved, clobber=True)


def test_an_hf_mirror_resumes_by_blob_id_and_lfs_sha256(hub, tmp_path, monkeypatch):
    name = "datasets/someone/mirror/archive.zip"
    url = f"hf://{name}"
    first, second = zip_bytes(6 * CHUNK, seed=4), zip_bytes(6 * CHUNK, seed=5)  # same size, other content
    hub.files[name] = first
    fields = validator(StubHubFileSystem().info(url))
    assert {"size", "blob_id", "lfs.sha256"} <= set(fields) and fields["lfs.sha256"] == hashlib.sha256(first).hexdigest()

    cache = tmp_path / "cache"
    calls = []
    original = StubHubFileSystem.cat_file

    def failing_after_three_chunks(self, path, start=None, end=None, **kwargs):
        calls.append(start)
        if len(calls) > 3:
            raise ConnectionResetError("the link dropped")
        return original(self, path, start, end)

    monkeypatch.setattr(StubHubFileSystem, "cat_file", failing_after_three_chunks)
    with pytest.raises(NetworkError):
        fetch(url, cache)
    monkeypatch.setattr(StubHubFileSystem, "cat_file", original)
    assert os.path.getsize(download.cached_path(url, str(cache)) + download.INCOMPLETE_SUFFIX) == 3 * CHUNK

    hub.files[name] = second  # a new commit: same size, another blob
    assert fetch(url, cache) == second
    assert hub.reads[0][0] == 0  # started again from zero
    hub.reads.clear()
    assert fetch(url, cache) == second and hub.reads == []  # revalidated by its blob id, not fetched again
    hub.files[name] = first
    assert fetch(url, cache) == first


# -- a file that changes during its download ---------------------------------------------------------


def change_on_get(server, path, versions: list, at_get: int):
    """Replace `path` with the next of `versions` when a GET number `at_get`, 2 * at_get, ... of it arrives."""
    count = [0]

    def hook(method, name, byte_range):
        if method == "GET" and name == os.path.basename(path):
            count[0] += 1
            if count[0] % at_get == 0 and versions:
                replace(path, versions.pop(0))

    server.before_request = hook


@pytest.mark.parametrize("new_size", [13 * CHUNK, 3 * CHUNK], ids=["grows", "shrinks-416"])
def test_a_file_that_changes_size_during_its_download_is_fetched_again_once(served, tmp_path, caplog, new_size):
    cache = tmp_path / "cache"
    new = zip_bytes(new_size, seed=6)
    with FileServer(served) as server:
        change_on_get(server, served / "archive.zip", [new], at_get=5)
        url = f"{server.url}/archive.zip"
        with caplog.at_level(logging.WARNING):
            assert fetch(url, cache) == new
        warnings = [record.getMessage() for record in caplog.records if "changed on the server during the download" in record.getMessage()]
        assert len(warnings) == 1 and "fetching it again from zero" in warnings[0], caplog.text
        assert "retry" not in caplog.text  # not mistaken for a truncated body and retried
        if new_size < 5 * CHUNK:
            assert 416 in {entry.status for entry in server.requests("archive.zip")}


def test_a_file_that_keeps_changing_fails_in_one_line(served, tmp_path):
    cache = tmp_path / "cache"
    with FileServer(served) as server:
        change_on_get(server, served / "archive.zip", [zip_bytes(n * CHUNK, seed=n) for n in (13, 15, 17)], at_get=3)
        url = f"{server.url}/archive.zip"
        with pytest.raises(ChangedOnServer) as failure:
            fetch(url, cache)
    message = str(failure.value)
    assert message.startswith(f"{url}: changed on the server during the download (") and message.endswith("; run again")
    assert "\n" not in message
    assert leftovers(cache) <= {"archive.zip.incomplete", "archive.zip.incomplete.json"}


def two_member_zip(path, seed: int) -> None:
    rng = random.Random(seed)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as archive:
        for name in ("a.bin", "b.bin"):
            archive.writestr(name, rng.randbytes(3 * CHUNK))


def test_an_archive_read_by_range_fails_when_it_is_no_longer_the_pinned_version(tmp_path):
    two_member_zip(tmp_path / "images.zip", seed=1)
    with FileServer(tmp_path) as server:
        url = f"{server.url}/images.zip"
        pinned = remote.current_version(url)
        with remote.open_zip(url, pin=pinned) as archive:
            first = archive.read("a.bin")
            two_member_zip(tmp_path / "images.zip", seed=2)  # same size and layout, new content and ETag
            with pytest.raises(ChangedOnServer, match=r"images\.zip: changed on the server during the build \(ETag .*\); run again$"):
                archive.read("b.bin")
        with pytest.raises(ChangedOnServer, match="changed on the server during the build"):
            remote.open_zip(url, pin=pinned)  # a later shard, another process: the same pin
        with remote.open_zip(url) as archive:  # a new build pins the new version
            assert archive.read("a.bin") != first


# -- servers without Range support, locks and partial files -----------------------------------------


def test_a_server_without_range_support_gets_one_whole_get(served, tmp_path):
    cache = tmp_path / "cache"
    with FileServer(served, ranges=False) as server:  # python -m http.server: Range ignored, 200 and the whole file
        assert fetch(f"{server.url}/archive.zip", cache) == (served / "archive.zip").read_bytes()
        # The first ranged GET is answered with the whole file and left after its headers; then one plain GET.
        assert [entry.range is None for entry in gets(server)] == [False, True]
    assert leftovers(cache) == {"archive.zip", "archive.zip" + download.VERSION_SUFFIX}


def test_no_lock_or_useless_partial_is_left_and_a_stale_lock_does_not_block(served, tmp_path):
    out = tmp_path / "mirror"
    out.mkdir()
    with FileServer(served) as server:
        server.faults = Faults(status=503)
        with pytest.raises(NetworkError):
            download.download(f"{server.url}/archive.zip", str(out / "archive.zip"), policy=FAST, progress=False, keep_version=False)
        assert os.listdir(out) == []  # nothing to resume from: no partial, no record, no lock

        server.faults = Faults(body_limit=2 * CHUNK + 10)
        with pytest.raises(NetworkError):
            download.download(f"{server.url}/archive.zip", str(out / "archive.zip"), policy=FAST, progress=False, keep_version=False)
        assert sorted(os.listdir(out)) == ["archive.zip.incomplete", "archive.zip.incomplete.json"]  # what a resume needs

        (out / "archive.zip.lock").write_text("")  # left by a process killed while it held the lock
        server.faults = None
        download.download(f"{server.url}/archive.zip", str(out / "archive.zip"), policy=FAST, progress=False, keep_version=False)
    assert os.listdir(out) == ["archive.zip"]
    assert (out / "archive.zip").read_bytes() == (served / "archive.zip").read_bytes()
