"""Builds over a server on 127.0.0.1 whose files change, get fixed or are re-served: a build never
exits 0 with rows from two versions of a file or with rows lost to a changed file. An image archive
replaced mid-build fails the build in one line; a changed annotation file is fetched again instead
of being read from the cache for good; a build that failed on a broken file builds once the server
is fixed, and its error names the URL and the cached copy."""

import io
import json
import os
import re
import shutil
import zipfile

import build
import pytest
from helpers import tree_digest
from range_server import FileServer

from arr_coc.network import download

CAP_FLAGS = ["--max-images-train", "3", "--max-images-validation", "2"]


def error_lines(capsys) -> list[str]:
    return [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]


def replace(path, data: bytes) -> None:
    with open(f"{path}.new", "wb") as handle:
        handle.write(data)
    os.replace(f"{path}.new", path)


def with_member(archive_path, member: str, data: bytes) -> bytes:
    """The bytes of `archive_path` with `member` replaced by `data`."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(archive_path) as source, zipfile.ZipFile(buffer, "w") as target:
        for info in source.infolist():
            target.writestr(info, data if info.filename == member else source.read(info))
    return buffer.getvalue()


@pytest.fixture
def served(mirror, tmp_path):
    """A copy of the session mirror that the test may change while it is served."""
    copy = tmp_path / "served"
    shutil.copytree(mirror, copy)
    return copy


def test_an_image_archive_replaced_mid_build_fails_in_one_line(served, tmp_path, capsys):
    repo = tmp_path / "repo"
    assert build.main(["--config", "small", "--data-dir", str(served), "--output-dir", str(repo), *CAP_FLAGS]) == 0
    before = tree_digest(repo)
    original = (served / "train2014.zip").read_bytes()
    # Another version of the archive: same members and layout, one image's bytes changed.
    with zipfile.ZipFile(served / "train2014.zip") as archive:
        name = next(n for n in archive.namelist() if n.endswith(".jpg"))
        other = with_member(served / "train2014.zip", name, archive.read(name)[::-1])
    gets = [0]

    def replace_after_two_reads(method, name, byte_range):
        if method == "GET" and name == "train2014.zip":
            gets[0] += 1
            if gets[0] == 3:  # the build has pinned it and read its directory: now it changes
                replace(served / "train2014.zip", other)

    with FileServer(served) as server:
        server.before_request = replace_after_two_reads
        capsys.readouterr()
        args = ["--config", "small", "--data-dir", server.url, "--output-dir", str(repo), "--cache-dir", str(tmp_path / "cache")]
        assert build.main([*args, *CAP_FLAGS]) == 1
        errors = error_lines(capsys)
    assert gets[0] >= 3 and original != other
    assert len(errors) == 1, errors
    assert re.match(rf"^error: {re.escape(server.url)}/train2014\.zip: changed on the server during the build \(.+\); run again$", errors[0]), errors[0]
    assert tree_digest(repo) == before  # nothing swapped in


def test_a_changed_annotation_file_is_fetched_again_not_read_from_the_cache(served, tmp_path):
    cache = tmp_path / "cache"
    name, member = "v2_Annotations_Train_mscoco.zip", "v2_mscoco_train2014_annotations.json"
    with FileServer(served) as server:
        args = ["--data-dir", server.url, "--cache-dir", str(cache), "--sources", "vqav2", *CAP_FLAGS]
        assert build.main(["--config", "small", "--output-dir", str(tmp_path / "first"), *args]) == 0
        with zipfile.ZipFile(served / name) as archive:
            record = json.loads(archive.read(member))
        for annotation in record["annotations"]:
            annotation["multiple_choice_answer"] = "changed"
        replace(served / name, with_member(served / name, member, json.dumps(record).encode()))
        assert build.main(["--config", "small", "--output-dir", str(tmp_path / "second"), *args]) == 0
    expected = tmp_path / "from-disk"
    assert build.main(["--config", "small", "--data-dir", str(served), "--output-dir", str(expected), "--sources", "vqav2", *CAP_FLAGS]) == 0
    second, first = tree_digest(tmp_path / "second" / "data"), tree_digest(tmp_path / "first" / "data")
    assert second == tree_digest(expected / "data") and second != first  # the new answers, not the cached ones


def test_a_build_that_failed_on_a_broken_file_builds_once_the_server_is_fixed(served, tmp_path, capsys):
    cache = tmp_path / "cache"
    name, member = "v2_Questions_Val_mscoco.zip", "v2_OpenEnded_mscoco_val2014_questions.json"
    good = (served / name).read_bytes()
    with zipfile.ZipFile(served / name) as archive:
        text = archive.read(member)
    replace(served / name, with_member(served / name, member, text[: len(text) // 2]))  # cut-off JSON in a whole zip
    with FileServer(served) as server:
        url = f"{server.url}/{name}"
        args = ["--config", "small", "--data-dir", server.url, "--cache-dir", str(cache), "--sources", "vqav2", *CAP_FLAGS]
        capsys.readouterr()
        assert build.main([*args, "--output-dir", str(tmp_path / "repo")]) == 1
        [error] = error_lines(capsys)
        cached = download.cached_path(url, os.path.join(str(cache), "downloads"))
        assert f"{url} (cached as {cached})" in error and "truncated" in error, error
        replace(served / name, good)  # the server is fixed
        assert build.main([*args, "--output-dir", str(tmp_path / "repo")]) == 0



def test_a_cached_file_that_another_build_replaces_mid_build_fails_in_one_line(served, tmp_path, monkeypatch, capsys):
    """Two builds share one download cache; the server changes COCO's annotations between them. The
    second build fetches the new version into the cache while the first is still reading the old one:
    the first must not go on with its validation rows from the new file and its train rows from the old."""
    from arr_coc.pipeline import shard

    cache = tmp_path / "cache"
    name, member = "annotations_trainval2014.zip", "annotations/captions_val2014.json"
    with zipfile.ZipFile(served / name) as archive:
        record = json.loads(archive.read(member))
    for annotation in record["annotations"]:
        annotation["caption"] = "changed " + annotation["caption"]
    changed = with_member(served / name, member, json.dumps(record).encode())
    collect, other_build_ran = shard._collect, []

    def collect_after_the_other_build(spec, *args, **kwargs):
        if spec.source == "coco" and spec.split == "validation" and not other_build_ran:
            replace(served / name, changed)  # the server changes ...
            download.cached_download(url, os.path.join(str(cache), "downloads"), progress=False)  # ... another build fetches it
            other_build_ran.append(True)
        return collect(spec, *args, **kwargs)

    monkeypatch.setattr(shard, "_collect", collect_after_the_other_build)
    with FileServer(served) as server:
        url = f"{server.url}/{name}"
        capsys.readouterr()
        args = ["--config", "small", "--data-dir", server.url, "--cache-dir", str(cache), "--sources", "coco"]
        assert build.main([*args, "--output-dir", str(tmp_path / "repo"), *CAP_FLAGS]) == 1
        errors = error_lines(capsys)
    cached = download.cached_path(url, os.path.join(str(cache), "downloads"))
    assert other_build_ran and len(errors) == 1, errors
    assert re.match(rf"^error: {re.escape(url)} \(cached as {re.escape(cached)}\): changed on disk during the build \(.+\); run again$", errors[0]), errors[0]
    assert not (tmp_path / "repo" / "data").exists()
