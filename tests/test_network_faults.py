"""Builds over an unreliable network: `scripts/build.py` against a server on 127.0.0.1 that injects
faults (503 with Retry-After, 500, connections reset or cut short mid-body, stalls beyond the read
timeout). Within the retry budget the shards and report are byte-identical to the build from disk;
beyond it the build fails in one line naming the URL, leaves the previous build untouched and keeps
its completed downloads. Only a real 404 of a per-image URL is `missing_image`."""

import json
import os
import re
import shutil
import socket
import zipfile

import build
import datasets
import pytest
from helpers import SPLITS, built_from_disk, by_file_order, comparable_digest, raw_rows, tree_digest
from range_server import Faults, FileServer

from arr_coc.readers import sources
from arr_coc_vqa import ArrCocVqa

CAPS = {"max_images_train": 3, "max_images_validation": 2}
CAP_FLAGS = ["--max-images-train", "3", "--max-images-validation", "2"]
IMAGE_ARCHIVES = ("train2014.zip", "val2014.zip", "images.zip")
ANNOTATION_ARCHIVES = tuple(name for name in sources.OFFICIAL_URLS if name not in IMAGE_ARCHIVES)
# Every kind of fault; each request is faulty on at most two tries, so three attempts get through.
FAULTS = Faults(seed=8, unavailable=0.08, error=0.08, reset=0.08, truncate=0.08, stall=0.02, stall_seconds=1.0)


@pytest.fixture(autouse=True)
def fast_retries(monkeypatch):
    """Tiny waits and a short read timeout, so that faults cost milliseconds."""
    monkeypatch.setenv("ARR_COC_MAX_RETRIES", "6")  # two injected faults per request, plus slack for a busy machine
    monkeypatch.setenv("ARR_COC_RETRY_BACKOFF_INITIAL", "0.001")
    monkeypatch.setenv("ARR_COC_RETRY_BACKOFF_MAX", "0.01")
    monkeypatch.setenv("ARR_COC_READ_TIMEOUT", "0.5")


@pytest.fixture(scope="module")
def disk_repos(mirror, tmp_path_factory):
    """The reference builds of `small` (capped) and `full`, from the mirror on disk."""
    return {config: built_from_disk(mirror, tmp_path_factory.mktemp(f"disk-{config}"), config, flags)
            for config, flags in (("small", CAP_FLAGS), ("full", []))}


def error_lines(capsys) -> list[str]:
    return [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]


def cached_files(cache) -> list[str]:
    folder = os.path.join(str(cache), "downloads")
    return sorted(os.listdir(folder)) if os.path.isdir(folder) else []


def test_builds_through_a_faulty_server_equal_the_builds_from_disk(mirror, disk_repos, tmp_path):
    cache = tmp_path / "cache"
    with FileServer(mirror, faults=FAULTS) as server:
        small = tmp_path / "small"
        args = ["--config", "small", "--data-dir", server.url, "--output-dir", str(small), "--cache-dir", str(cache)]
        assert build.main([*args, *CAP_FLAGS]) == 0
        assert comparable_digest(small / "data") == comparable_digest(disk_repos["small"] / "data")
        log = server.requests()
        assert {500, 503} <= {entry.status for entry in log}  # the faults did happen ...
        assert any(entry.status == 206 and entry.range and _range_length(entry.range) > entry.bytes_sent for entry in log)
        for name in ANNOTATION_ARCHIVES:  # ... and the annotation archives now are in the cache
            assert any(file.endswith("-" + name) for file in cached_files(cache)), name

        # Another config (in two processes): each annotation archive costs a HEAD (is it still the
        # version in the cache?) and not one byte of body again.
        server.clear_log()
        full = tmp_path / "full"
        args = ["--config", "full", "--data-dir", server.url, "--output-dir", str(full), "--cache-dir", str(cache)]
        assert build.main([*args, "--num-proc", "2"]) == 0
        assert tree_digest(full / "data") == tree_digest(disk_repos["full"] / "data")
        requested = {entry.path.lstrip("/") for entry in server.requests() if entry.method == "GET"}
        assert requested and not requested & set(ANNOTATION_ARCHIVES)
        assert {entry.path.lstrip("/") for entry in server.requests() if entry.method == "HEAD"} >= set(ANNOTATION_ARCHIVES)
        assert not [path for path in tree_digest(full) if path.endswith(".zip")]  # no download inside the repo


def test_streaming_through_a_faulty_server_gives_the_rows_from_disk(mirror, disk_repos, tmp_path):
    """Streaming reads annotation members lazily, by range requests: those are retried too."""
    expected = {split: raw_rows(datasets.load_dataset(str(disk_repos["small"]), "small", split=split)) for split in SPLITS}
    with FileServer(mirror, faults=FAULTS) as server:
        builder = ArrCocVqa(config_name="small", data_dir=server.url, cache_dir=str(tmp_path / "cache"), **CAPS)
        streamed = builder.as_streaming_dataset()
        for split in SPLITS:
            # load_dataset reads the shard files by name: the sources interleaved by the shard order.
            assert by_file_order(raw_rows(streamed[split])) == expected[split]
        annotation_gets = [e for e in server.requests() if e.method == "GET" and e.path.lstrip("/") in ANNOTATION_ARCHIVES]
        assert annotation_gets and all(e.range for e in annotation_gets)  # read in place, not downloaded
        assert {500, 503} & {e.status for e in server.requests()}
    assert not os.path.exists(tmp_path / "cache" / "downloads")


def _range_length(header: str) -> int:
    first, last = header[len("bytes="):].split("-")
    return int(last) - int(first) + 1


@pytest.mark.parametrize("num_proc", ["1", "2"])
def test_faults_beyond_the_budget_fail_in_one_line_and_keep_the_downloads(mirror, disk_repos, tmp_path, capsys, num_proc):
    repo = tmp_path / "repo"
    shutil.copytree(disk_repos["small"], repo)
    before = tree_digest(repo)
    cache = tmp_path / "cache"
    # The image archives' HEADs work, every ranged GET of them answers 503 (with Retry-After).
    outage = Faults(status=503, paths=frozenset(IMAGE_ARCHIVES), methods=frozenset({"GET"}))
    with FileServer(mirror, faults=outage) as server:
        args = ["--config", "small", "--data-dir", server.url, "--output-dir", str(repo), "--cache-dir", str(cache)]
        capsys.readouterr()
        assert build.main([*args, *CAP_FLAGS, "--max-retries", "2", "--num-proc", num_proc]) == 1
        errors = error_lines(capsys)
        assert len(errors) == 1, errors
        pattern = rf"^error: {re.escape(server.url)}/(train2014|val2014|images)\.zip bytes \d+-\d+: network read failed after 3 attempts: HTTP 503 Service Unavailable$"
        assert re.match(pattern, errors[0]), errors[0]
        gets = [entry for entry in server.requests() if entry.method == "GET" and entry.path.lstrip("/") in IMAGE_ARCHIVES]
        assert gets and all(entry.status == 503 for entry in gets)
    assert tree_digest(repo) == before  # nothing swapped in
    kept = cached_files(cache)
    for name in ANNOTATION_ARCHIVES:  # every completed download stays for the next try
        assert any(file.endswith("-" + name) for file in kept), name
    assert not [file for file in kept if file.endswith((".incomplete", ".incomplete.json", ".lock"))]


# -- the official URLs: per-image COCO URLs --------------------------------------------------------


@pytest.fixture(scope="module")
def official_hosts(mirror, tmp_path_factory):
    """The archive host's files, and the image host's COCO images as `<folder>__<file name>`."""
    archives = tmp_path_factory.mktemp("archive-host")
    images = tmp_path_factory.mktemp("image-host")
    for name in os.listdir(mirror):
        if name.endswith(".zip") and name not in ("train2014.zip", "val2014.zip"):
            os.link(os.path.join(mirror, name), os.path.join(archives, name))
    for archive in ("train2014.zip", "val2014.zip"):
        with zipfile.ZipFile(os.path.join(mirror, archive)) as handle:
            for member in handle.namelist():
                if not member.endswith("/"):
                    folder, file_name = member.split("/")
                    (images / f"{folder}__{file_name}").write_bytes(handle.read(member))
    return archives, images


@pytest.fixture
def official_urls(official_hosts, monkeypatch):
    """Point the official URLs at servers on 127.0.0.1; yields a function that sets the image host."""
    archives, _ = official_hosts
    with FileServer(archives) as archive_server:
        monkeypatch.setattr(sources, "OFFICIAL_URLS", {name: f"{archive_server.url}/{name}" for name in sources.OFFICIAL_URLS})

        def use_image_host(base_url: str) -> None:
            monkeypatch.setattr(sources, "COCO_IMAGE_URL", base_url + "/{folder}__{file_name}")

        yield use_image_host


def closed_port_url() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}"  # nothing listens there any more: connection refused


@pytest.mark.parametrize(
    "status, num_proc, last_error",
    [
        (503, "1", "after 2 attempts: HTTP 503 Service Unavailable"),
        (500, "2", "after 2 attempts: HTTP 500 Internal Server Error"),
        (403, "1", "after 1 attempt: HTTP 403 Forbidden"),
        (None, "1", "after 2 attempts: ConnectionRefusedError"),
    ],
)
def test_an_image_host_that_fails_fails_the_build(official_urls, official_hosts, tmp_path, capsys, status, num_proc, last_error):
    repo = tmp_path / "repo"
    args = ["--config", "small", "--output-dir", str(repo), "--cache-dir", str(tmp_path / "cache"), *CAP_FLAGS]
    capsys.readouterr()
    if status is None:
        official_urls(host := closed_port_url())
        code = build.main([*args, "--max-retries", "1", "--num-proc", num_proc])
    else:
        with FileServer(official_hosts[1], faults=Faults(status=status)) as image_server:
            official_urls(host := image_server.url)
            code = build.main([*args, "--max-retries", "1", "--num-proc", num_proc])
    assert code == 1  # never a build with the COCO-image sources silently emptied
    errors = error_lines(capsys)
    assert len(errors) == 1, errors
    assert re.match(rf"^error: {re.escape(host)}/(train|val)2014__COCO_(train|val)2014_\d+\.jpg: network read failed {last_error}", errors[0]), errors[0]
    assert not (repo / "data").exists()


def test_an_image_the_host_does_not_have_is_a_missing_image(official_urls, tmp_path):
    empty = tmp_path / "empty-image-host"
    empty.mkdir()
    repo = tmp_path / "repo"
    with FileServer(empty) as image_server:
        official_urls(image_server.url)
        # Every COCO image is missing here, and of the two capped GQA validation images one is corrupt and
        # one overlaps COCO train2014: without leakage control the validation split keeps a row (a split
        # with no rows at all is refused, see test_cli_safety).
        args = ["--config", "small", "--output-dir", str(repo), "--cache-dir", str(tmp_path / "cache"), *CAP_FLAGS]
        assert build.main([*args, "--no-decontaminate"]) == 0
        assert {entry.status for entry in image_server.requests()} == {404}
    with open(repo / "data" / "small" / "build_report.json") as handle:
        report = json.load(handle)
    for source in ("vqav2", "okvqa", "coco"):
        for split, figures in report["sources"][source].items():
            assert figures["items_written"] == 0 and figures["skipped"]["missing_image"] > 0, (source, split)
    assert report["sources"]["gqa"]["train"]["items_written"] > 0  # GQA images come from images.zip, not this host
