"""The builder over HTTP: a mirror served on 127.0.0.1 by a real server gives exactly the rows of the
same mirror on disk, image archives are read member by member with Range requests, and a server
without Range support fails in one clear line."""

import json
import os
import re
import zipfile
from collections import Counter

import build
import datasets
import pytest
from helpers import ROOT, SPLITS, built_from_disk, by_file_order, make_mirror, raw_rows, tree_digest, without_n_images_audit
from range_server import FileServer, RangeRequestHandler
from torch.utils.data import DataLoader

from arr_coc.network import remote
from arr_coc.network.remote import RangeRequestsUnsupported
from arr_coc_vqa import ArrCocVqa

IMAGE_ARCHIVES = ("train2014.zip", "val2014.zip", "images.zip")
# A small cap on a mirror of bigger images: most of every image archive must stay untouched.
CAPS = {"max_images_train": 2, "max_images_validation": 2}
CAP_FLAGS = ["--max-images-train", "2", "--max-images-validation", "2"]


@pytest.fixture(scope="module")
def mirror(tmp_path_factory):
    path = tmp_path_factory.mktemp("http-mirror")
    make_mirror(path, images_per_split=48, questions_per_image=2, image_size=(320, 240))
    return path


@pytest.fixture(scope="module")
def disk_repo(mirror, tmp_path_factory):
    """The reference: the same config built from the mirror on disk."""
    return built_from_disk(mirror, tmp_path_factory.mktemp("disk-repo"), flags=CAP_FLAGS)


@pytest.fixture(scope="module")
def disk_rows(disk_repo):
    return {split: raw_rows(datasets.load_dataset(str(disk_repo), "small", split=split)) for split in SPLITS}


def largest_single_read(archive_path: str) -> int:
    """Bytes the biggest legitimate range read of this zip may take: one member, or the directory."""
    with zipfile.ZipFile(archive_path) as archive:
        directory_and_end = os.path.getsize(archive_path) - archive.start_dir
        member = max(remote._member_span(info)[1] - remote._member_span(info)[0] for info in archive.infolist())
    return max(directory_and_end, member)


def assert_image_archives_read_by_ranges(server: FileServer, mirror) -> dict:
    """Every GET of an image archive was ranged, no read exceeds one member (or the zip directory),
    and far less than the archive went over the wire. Returns per-archive figures."""
    figures = {}
    for name in IMAGE_ARCHIVES:
        size = os.path.getsize(os.path.join(str(mirror), name))
        gets = [entry for entry in server.requests(name) if entry.method == "GET"]
        assert gets, name
        assert all(entry.range is not None and entry.status == 206 for entry in gets), name
        assert max(entry.bytes_sent for entry in gets) <= largest_single_read(os.path.join(str(mirror), name)), name
        sent = sum(entry.bytes_sent for entry in gets)
        assert sent < size / 4, (name, sent, size)
        figures[name] = {"gets": len(gets), "bytes_sent": sent, "archive_bytes": size}
    return figures


def test_build_over_http_equals_the_build_from_disk(mirror, disk_repo, disk_rows, tmp_path):
    repo = tmp_path / "http-repo"
    with FileServer(mirror) as server:
        args = ["--config", "small", "--data-dir", server.url, "--output-dir", str(repo), "--num-proc", "2", *CAP_FLAGS]
        assert build.main(args) == 0
        figures = assert_image_archives_read_by_ranges(server, mirror)
    for split in SPLITS:
        rows = raw_rows(datasets.load_dataset(str(repo), "small", split=split))
        assert rows == disk_rows[split] and rows
    report, disk_report = (json.loads((path / "data" / "small" / "build_report.json").read_text()) for path in (repo, disk_repo))
    assert without_n_images_audit(report) == without_n_images_audit(disk_report)
    assert not report["near_duplicates"]["comparisons"]["train_vs_gqa_n_images"]["audited"]  # capped, remote: said so
    print("image archive reads over HTTP (build):", figures)  # shown with pytest -s


def test_streaming_builder_over_http_gives_the_on_disk_rows(mirror, disk_rows, tmp_path):
    with FileServer(mirror) as server:
        builder = ArrCocVqa(config_name="small", data_dir=server.url, cache_dir=str(tmp_path / "cache"), **CAPS)
        streams = builder.as_streaming_dataset()
        for split in SPLITS:
            # load_dataset reads the shard files by name: the sources interleaved by the shard order.
            assert by_file_order(raw_rows(streams[split])) == disk_rows[split]
        # DataLoader workers open their own HTTP sessions after the fork.
        loader = DataLoader(streams["train"].select_columns(["id"]), batch_size=2, num_workers=2, collate_fn=collate_ids)
        seen = Counter(row_id for batch in loader for row_id in batch)
        assert set(seen.values()) == {1} and sorted(seen) == sorted(row["id"] for row in disk_rows["train"])
        assert_image_archives_read_by_ranges(server, mirror)


def collate_ids(batch):
    return [row["id"] for row in batch]


def test_one_member_costs_one_exact_range_request(mirror):
    local = os.path.join(str(mirror), "train2014.zip")
    with zipfile.ZipFile(local) as archive:
        members = [info for info in archive.infolist() if info.filename.endswith(".jpg")]
        expected = {info.filename: archive.read(info) for info in members[-3:]}
    with FileServer(mirror) as server:
        with remote.open_zip(f"{server.url}/train2014.zip") as archive:
            opened = server.requests("train2014.zip")
            # size; end-of-central-directory record; zip64 locator (absent here); central directory
            assert [entry.method for entry in opened] == ["HEAD", "GET", "GET", "GET"]
            for info in members[-3:]:
                server.clear_log()
                assert archive.read(info.filename) == expected[info.filename]
                [get] = server.requests("train2014.zip")
                start, end = remote._member_span(info)
                assert get.range == f"bytes={start}-{min(end, os.path.getsize(local)) - 1}"
                assert get.bytes_sent <= info.compress_size + 30 + len(info.filename) + len(info.extra) + 1024


def test_members_bigger_than_the_prefetch_limit_stream_correctly(mirror, monkeypatch):
    monkeypatch.setattr(remote, "MAX_MEMBER_PREFETCH", 1000)  # every image becomes a "big" member
    with zipfile.ZipFile(os.path.join(str(mirror), "images.zip")) as archive:
        names = [info.filename for info in archive.infolist() if info.file_size > 5000][:4]
        expected = [archive.read(name) for name in names]
    with FileServer(mirror) as server:
        with remote.open_zip(f"{server.url}/images.zip", block_size=4096) as archive:
            assert [archive.read(name) for name in names] == expected
        assert all(entry.range for entry in server.requests("images.zip") if entry.method == "GET")


def test_server_without_range_support_fails_in_one_clear_line(mirror, disk_repo, tmp_path, capsys):
    repo = tmp_path / "previous-build"
    assert build.main(["--config", "small", "--data-dir", str(mirror), "--output-dir", str(repo), *CAP_FLAGS]) == 0
    before = tree_digest(repo)
    fresh = tmp_path / "fresh"
    capsys.readouterr()
    with FileServer(mirror, ranges=False) as server:
        for output, num_proc in ((repo, "1"), (repo, "2"), (fresh, "1")):
            args = ["--config", "small", "--data-dir", server.url, "--output-dir", str(output), "--num-proc", num_proc, *CAP_FLAGS]
            assert build.main(args) == 1
            errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
            assert len(errors) == 1, errors
            assert re.search(rf"{re.escape(server.url)}/(train2014|val2014|images)\.zip: ", errors[0])
            assert "does not support Range requests" in errors[0]
        assert tree_digest(repo) == before  # the failed builds left the previous one exactly as it was
        assert tree_digest(fresh) == {}  # and wrote nothing where there was nothing

        builder = ArrCocVqa(config_name="small", data_dir=server.url, cache_dir=str(tmp_path / "cache"), **CAPS)
        with pytest.raises(RangeRequestsUnsupported, match="does not support Range requests"):
            next(iter(builder.as_streaming_dataset(split="train")))


class RangesRefusedHandler(RangeRequestHandler):
    accept_ranges = "none"  # some servers and CDNs say so up front


def test_server_that_refuses_ranges_up_front_is_refused_after_one_head(mirror):
    with FileServer(mirror, handler=RangesRefusedHandler) as server:
        with pytest.raises(RangeRequestsUnsupported, match=re.escape("does not support Range requests (it answers Accept-Ranges: none)")):
            remote.open_zip(f"{server.url}/images.zip")
        assert [entry.method for entry in server.requests()] == ["HEAD"]


def test_http_dependencies_are_declared():
    with open(os.path.join(ROOT, "requirements.txt")) as handle:
        pins = dict(line.strip().split("==") for line in handle if "==" in line and not line.startswith("#"))
    import aiohttp
    import requests

    assert pins["aiohttp"] == aiohttp.__version__ and pins["requests"] == requests.__version__
