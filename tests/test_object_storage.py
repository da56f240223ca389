"""Mirrors in object storage: an s3:// mirror on a local S3-compatible server (moto's server mode,
read by the real s3fs client) builds the same bytes as the mirror on disk, the builder class streams
the same rows from it, image members are read by exact ranges, and a protocol whose optional
package is missing fails in one line naming the package to install."""

import os
import sys
import zipfile

import build
import datasets
import pytest
from helpers import SPLITS, built_from_disk, by_file_order, comparable_digest, raw_rows, tree_digest

from arr_coc.network import remote
from arr_coc_vqa import ArrCocVqa

pytest.importorskip("s3fs", reason="s3:// mirrors need the optional package s3fs (requirements-test.txt)")
boto3 = pytest.importorskip("boto3", reason="the S3 test server needs moto[server] (requirements-test.txt)")
moto_server = pytest.importorskip("moto.server", reason="the S3 test server needs moto[server] (requirements-test.txt)")

BUCKET = "arr-coc-mirrors"
MIRROR_URL = f"s3://{BUCKET}/mirror"


@pytest.fixture(scope="module")
def s3_mirror(mirror, tmp_path_factory):
    """The mirror uploaded to a fresh S3 server on 127.0.0.1; credentials only from the environment."""
    import s3fs

    empty = tmp_path_factory.mktemp("no-aws-config")
    with pytest.MonkeyPatch.context() as env:
        # What a user's shell would hold; no ~/.aws file or instance metadata can leak in.
        env.setenv("AWS_ACCESS_KEY_ID", "testing")
        env.setenv("AWS_SECRET_ACCESS_KEY", "testing")
        env.setenv("AWS_DEFAULT_REGION", "us-east-1")
        env.setenv("AWS_CONFIG_FILE", str(empty / "config"))
        env.setenv("AWS_SHARED_CREDENTIALS_FILE", str(empty / "credentials"))
        env.setenv("AWS_EC2_METADATA_DISABLED", "true")
        server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        server.start()
        try:
            host, port = server.get_host_and_port()
            # botocore's standard per-service endpoint variable, honoured by s3fs's aiobotocore client.
            env.setenv("AWS_ENDPOINT_URL_S3", f"http://{host}:{port}")
            client = boto3.client("s3")
            client.create_bucket(Bucket=BUCKET)
            for name in sorted(os.listdir(mirror)):
                client.upload_file(os.path.join(mirror, name), BUCKET, f"mirror/{name}")
            s3fs.S3FileSystem.clear_instance_cache()  # no client of another endpoint is reused
            yield MIRROR_URL
        finally:
            s3fs.S3FileSystem.clear_instance_cache()
            server.stop()


@pytest.fixture(scope="module")
def disk_repo(mirror, tmp_path_factory):
    return built_from_disk(mirror, tmp_path_factory.mktemp("disk-repo"))


def test_build_from_s3_is_byte_identical_to_the_build_from_disk(s3_mirror, disk_repo, tmp_path):
    repo = tmp_path / "s3-repo"
    # Two processes: each forked worker opens its own s3fs client.
    assert build.main(["--config", "small", "--data-dir", s3_mirror, "--output-dir", str(repo), "--num-proc", "2"]) == 0
    built = comparable_digest(repo)
    assert any(path.endswith(".parquet") for path in built)
    assert built == comparable_digest(disk_repo)


def test_builder_class_streams_the_disk_rows_from_s3(s3_mirror, disk_repo, tmp_path):
    builder = ArrCocVqa(config_name="small", data_dir=s3_mirror, cache_dir=str(tmp_path / "cache"))
    streams = builder.as_streaming_dataset()
    for split in SPLITS:
        expected = raw_rows(datasets.load_dataset(str(disk_repo), "small", split=split))
        # load_dataset reads the shard files by name: the sources interleaved by the shard order.
        streamed = by_file_order(raw_rows(streams[split]))
        assert expected and streamed == expected


def test_an_s3_member_costs_one_exact_ranged_fetch(s3_mirror, mirror):
    with zipfile.ZipFile(os.path.join(mirror, "train2014.zip")) as local:
        members = [info for info in local.infolist() if info.filename.endswith(".jpg")]
        expected = {info.filename: local.read(info) for info in members[-3:]}
    with remote.open_zip(f"{s3_mirror}/train2014.zip") as archive:
        cache = archive.fp.cache
        assert isinstance(cache, remote.MemberSpanCache)
        for name, data in expected.items():
            start, end = remote._member_span(archive.getinfo(name))
            fetches, fetched = cache.miss_count, cache.total_requested_bytes
            assert archive.read(name) == data
            assert cache.miss_count == fetches + 1
            assert cache.total_requested_bytes - fetched == min(end, cache.size) - start


def test_a_missing_protocol_package_is_one_line_naming_it(tmp_path, capsys, monkeypatch):
    # gcsfs is a test requirement (tests/test_gcs.py): here it is made unimportable, as on a machine without it.
    monkeypatch.setitem(sys.modules, "gcsfs", None)
    registry = sys.modules["fsspec.registry"]._registry
    for protocol in ("gs", "gcs"):
        monkeypatch.delitem(registry, protocol, raising=False)
    assert build.main(["--config", "small", "--data-dir", "gs://bucket/mirror", "--output-dir", str(tmp_path)]) == 1
    error = capsys.readouterr().err.strip().splitlines()
    assert error == ["error: gs://bucket/mirror: reading gs:// URLs needs the optional package gcsfs: pip install gcsfs"]
    assert not os.path.exists(tmp_path / "data")


def test_an_unknown_protocol_is_one_line(tmp_path, capsys):
    assert build.main(["--config", "small", "--data-dir", "nosuch://bucket/mirror", "--output-dir", str(tmp_path)]) == 1
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and "nosuch" in error[0] and "fsspec knows no protocol" in error[0]


def test_fetch_sources_from_an_s3_mirror_gives_its_files(s3_mirror, mirror, tmp_path):
    import fetch_sources

    out = tmp_path / "out"
    assert fetch_sources.main([str(out), "--from", s3_mirror, "--sources", "okvqa,coco"]) == 0
    names = set(os.listdir(out))
    assert "annotations_trainval2014.zip" in names and "train2014.zip" in names and "images.zip" not in names
    for name in names:
        assert (out / name).read_bytes() == (mirror / name).read_bytes(), name


def test_a_file_url_is_the_local_mirror(mirror, disk_repo, tmp_path):
    repo = tmp_path / "file-url-repo"
    assert build.main(["--config", "small", "--data-dir", f"file://{mirror}", "--output-dir", str(repo)]) == 0
    assert tree_digest(repo) == tree_digest(disk_repo)


def test_a_mirror_missing_a_file_fails_in_one_line_naming_it(s3_mirror, tmp_path, capsys):
    empty = f"s3://{BUCKET}/no-such-mirror"
    assert build.main(["--config", "small", "--data-dir", empty, "--output-dir", str(tmp_path), "--max-retries", "0"]) == 1
    (error,) = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert error.startswith(f"error: {empty}/") and "not found" in error
    assert not os.path.exists(tmp_path / "data")


def test_a_filesystem_error_that_does_not_say_where_is_given_the_url(tmp_path, capsys):
    # fsspec's ftp filesystem connects when it is created, and its error names no URL (nor does
    # botocore's "Unable to locate credentials"): the one line must say which file it was reading.
    repo = tmp_path / "repo"
    args = ["--config", "small", "--data-dir", "ftp://127.0.0.1:1/mirror", "--output-dir", str(repo), "--max-retries", "0"]
    assert build.main(args) == 1
    [line] = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert "reading ftp://127.0.0.1:1/mirror/" in line and "ConnectionRefusedError" in line, line
    assert not (repo / "data").exists()
