"""gs:// mirrors for real: the real gcsfs client against a GCS emulator (PyPI `gcp-storage-emulator`)
that this module starts on 127.0.0.1 and finds through STORAGE_EMULATOR_HOST, as Vertex AI users
reach their buckets. A build from the gs:// mirror gives the bytes of the build from disk, an
interrupted download resumes from the bytes on disk, and an object replaced during a build (a new
generation) fails the build in one line."""

import os
import re
import socket
import subprocess
import sys
import time
import zipfile

import build
import fsspec
import pytest
from helpers import built_from_disk, comparable_digest

from arr_coc.network import download
from arr_coc.network.retry import NetworkError, RetryPolicy

gcsfs = pytest.importorskip("gcsfs", reason="gs:// mirrors need the optional package gcsfs (requirements-test.txt)")
pytest.importorskip("gcp_storage_emulator", reason="the GCS test server is gcp-storage-emulator (requirements-test.txt)")

BUCKET = "arr-coc-mirrors"
MIRROR_URL = f"gs://{BUCKET}/mirror"
CAP_FLAGS = ["--max-images-train", "3", "--max-images-validation", "2"]
FAST = RetryPolicy(max_attempts=3, backoff_initial=0.001, backoff_max=0.01, read_timeout=5.0)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def emulator(tmp_path_factory):
    """The emulator on 127.0.0.1, and gcsfs pointed at it as a user's environment would point it."""
    port = free_port()
    log = open(tmp_path_factory.mktemp("gcs") / "emulator.log", "wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "gcp_storage_emulator", "start", "--host=127.0.0.1", f"--port={port}", "--in-memory",
         f"--default-bucket={BUCKET}"], stdout=log, stderr=log,
    )  # fmt: skip
    with pytest.MonkeyPatch.context() as env:
        env.setenv("STORAGE_EMULATOR_HOST", f"http://127.0.0.1:{port}")
        # gcsfs's default class first asks a bucket for its type over gRPC, which the emulator does not
        # serve (a minute per bucket). GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT=false turns that off, but it is
        # read when gcsfs is imported, so here gs:// gets the plain class that setting selects.
        for protocol in ("gs", "gcs"):
            env.setitem(sys.modules["fsspec.registry"]._registry, protocol, gcsfs.core.GCSFileSystem)
        # No credentials here: anonymous, like a public bucket (fsspec's per-protocol defaults, what
        # FSSPEC_GS_TOKEN=anon in the environment sets).
        env.setitem(fsspec.config.conf, "gs", {"token": "anon", "project": "test"})
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), 0.2).close()
                break
            except OSError:
                assert process.poll() is None and time.monotonic() < deadline, "the GCS emulator did not start"
                time.sleep(0.1)
        gcsfs.core.GCSFileSystem.clear_instance_cache()
        try:
            yield gcsfs.core.GCSFileSystem(token="anon", project="test")
        finally:
            gcsfs.core.GCSFileSystem.clear_instance_cache()
            process.terminate()
            process.wait(10)
            log.close()


@pytest.fixture(scope="module")
def gs_mirror(emulator, mirror):
    for name in sorted(os.listdir(mirror)):
        emulator.pipe_file(f"{BUCKET}/mirror/{name}", (mirror / name).read_bytes())
    return MIRROR_URL


@pytest.fixture(scope="module")
def disk_repo(mirror, tmp_path_factory):
    return built_from_disk(mirror, tmp_path_factory.mktemp("disk-repo"), flags=CAP_FLAGS)


def patch_reads(monkeypatch, reader) -> None:
    """gcsfs reads by `_cat_file`; its sync `cat_file` is bound per instance, and instances are cached."""
    monkeypatch.setattr(gcsfs.core.GCSFileSystem, "_cat_file", reader)
    gcsfs.core.GCSFileSystem.clear_instance_cache()


def test_build_from_gs_is_byte_identical_to_the_build_from_disk(gs_mirror, disk_repo, tmp_path):
    repo = tmp_path / "gs-repo"
    args = ["--config", "small", "--data-dir", gs_mirror, "--output-dir", str(repo), "--cache-dir", str(tmp_path / "cache")]
    assert build.main([*args, *CAP_FLAGS, "--num-proc", "2"]) == 0  # each forked worker opens its own client
    built = comparable_digest(repo)  # a capped build over gs:// leaves the n... images out of its audit, and says so
    assert any(path.endswith(".parquet") for path in built) and built == comparable_digest(disk_repo)


def test_an_interrupted_gs_download_resumes_from_the_bytes_on_disk(gs_mirror, mirror, emulator, tmp_path, monkeypatch):
    chunk = 8 * 1024
    monkeypatch.setattr(download, "CHUNK_SIZE", chunk)
    monkeypatch.setattr(download, "PARALLEL_CHUNKS", 1)
    url, cache = f"{gs_mirror}/images.zip", tmp_path / "cache"
    size = os.path.getsize(mirror / "images.zip")
    assert size > 4 * chunk
    reads = []
    original = gcsfs.core.GCSFileSystem._cat_file

    async def dropping_after_three(self, path, start=None, end=None, **kwargs):
        reads.append(start)
        if len(reads) > 3:
            raise ConnectionResetError("the link dropped")
        return await original(self, path, start=start, end=end, **kwargs)

    patch_reads(monkeypatch, dropping_after_three)
    with pytest.raises(NetworkError):
        download.cached_download(url, str(cache), policy=FAST, progress=False)
    partial = download.cached_path(url, str(cache)) + download.INCOMPLETE_SUFFIX
    assert os.path.getsize(partial) == 3 * chunk

    counting = []

    async def counted(self, path, start=None, end=None, **kwargs):
        counting.append(start)
        return await original(self, path, start=start, end=end, **kwargs)

    patch_reads(monkeypatch, counted)
    path = download.cached_download(url, str(cache), policy=FAST, progress=False)
    assert open(path, "rb").read() == (mirror / "images.zip").read_bytes()
    assert min(counting) == 3 * chunk and len(counting) == -(-(size - 3 * chunk) // chunk)  # only the missing chunks


def test_an_object_replaced_during_a_build_fails_it_in_one_line(gs_mirror, mirror, emulator, tmp_path, monkeypatch, capsys):
    name = "train2014.zip"
    with zipfile.ZipFile(mirror / name) as archive, zipfile.ZipFile(tmp_path / name, "w") as other:
        for info in archive.infolist():  # the same layout, every image's bytes changed: a new generation
            data = archive.read(info)
            other.writestr(info, data[::-1] if info.filename.endswith(".jpg") else data)
    replacement = (tmp_path / name).read_bytes()
    reads = []
    original = gcsfs.core.GCSFileSystem._cat_file

    async def replacing_after_two_reads(self, path, start=None, end=None, **kwargs):
        if path.endswith(f"/mirror/{name}"):
            reads.append(start)
            if len(reads) == 3:
                await self._pipe_file(f"{BUCKET}/mirror/{name}", replacement)
        return await original(self, path, start=start, end=end, **kwargs)

    patch_reads(monkeypatch, replacing_after_two_reads)
    repo = tmp_path / "repo"
    capsys.readouterr()
    try:
        code = build.main(["--config", "small", "--data-dir", gs_mirror, "--output-dir", str(repo), "--sources", "coco",
                           "--cache-dir", str(tmp_path / "cache"), *CAP_FLAGS])
    finally:
        emulator.pipe_file(f"{BUCKET}/mirror/{name}", (mirror / name).read_bytes())  # the other tests' mirror again
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert code == 1 and len(reads) >= 3
    assert len(errors) == 1, errors
    pattern = rf"^error: {re.escape(gs_mirror)}/{name}: changed on the server during the build \(generation \d+ -> \d+\); run again$"
    assert re.match(pattern, errors[0]), errors[0]
    assert not (repo / "data").exists()
