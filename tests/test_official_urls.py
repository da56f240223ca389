"""Without data_dir the builder uses the official URLs: a capped config must never download a whole
image archive (COCO images come one by one, GQA images by range reads of images.zip).

The official hosts are stood in for by a Range-capable server on 127.0.0.1 that serves the mirror's
annotation archives and images.zip, and the COCO images as single files. The COCO image archives
are not served at all, so any request for one would fail the build.
"""

import os
import zipfile

import pytest
from helpers import SPLITS, prepared, raw_rows
from range_server import FileServer

from arr_coc.readers import sources
from arr_coc_vqa import ArrCocVqa

COCO_ARCHIVES = ("train2014.zip", "val2014.zip")
CAPS = {"max_images_train": 3, "max_images_validation": 2}


@pytest.fixture(scope="module")
def official_host(mirror, tmp_path_factory):
    """The official files, flat: archives as they are, COCO images as `<folder>__<file name>`."""
    host = tmp_path_factory.mktemp("official-host")
    for name in os.listdir(mirror):
        if name.endswith(".zip") and name not in COCO_ARCHIVES:
            os.link(os.path.join(mirror, name), os.path.join(host, name))
    for archive in COCO_ARCHIVES:
        with zipfile.ZipFile(os.path.join(mirror, archive)) as handle:
            for member in handle.namelist():
                if not member.endswith("/"):
                    folder, file_name = member.split("/")
                    (host / f"{folder}__{file_name}").write_bytes(handle.read(member))
    return host


@pytest.fixture
def official_server(official_host, monkeypatch):
    with FileServer(official_host) as server:
        urls = {name: f"{server.url}/{name}" for name in sources.OFFICIAL_URLS}
        monkeypatch.setattr(sources, "OFFICIAL_URLS", urls)
        monkeypatch.setattr(sources, "COCO_IMAGE_URL", server.url + "/{folder}__{file_name}")
        yield server


@pytest.fixture(scope="module")
def disk_builder(mirror, tmp_path_factory):
    return prepared(mirror, tmp_path_factory.mktemp("disk-cache"), "small", **CAPS)


def assert_no_whole_image_archive(server: FileServer) -> None:
    requested = {entry.path.lstrip("/") for entry in server.requests()}
    assert not requested & set(COCO_ARCHIVES)
    image_zip_gets = [entry for entry in server.requests("images.zip") if entry.method == "GET"]
    assert image_zip_gets and all(entry.range and entry.status == 206 for entry in image_zip_gets)
    single_images = [name for name in requested if "__COCO_" in name]
    assert single_images  # COCO images were fetched one by one


def test_capped_build_from_official_urls_fetches_single_images(official_server, disk_builder, tmp_path):
    builder = ArrCocVqa(config_name="small", cache_dir=str(tmp_path), **CAPS)
    assert builder.config.data_dir is None
    builder.download_and_prepare()
    built, expected = builder.as_dataset(), disk_builder.as_dataset()
    for split in SPLITS:
        assert raw_rows(built[split]) == raw_rows(expected[split])
    assert builder.build_stats() == disk_builder.build_stats()  # missing images too: a 404 is `missing_image`
    assert_no_whole_image_archive(official_server)
    # Only the selected images were asked for: at most cap images per COCO-family source and split.
    single_images = {e.path for e in official_server.requests() if "__COCO_" in e.path}
    assert len(single_images) <= 3 * (CAPS["max_images_train"] + CAPS["max_images_validation"])


def test_streaming_from_official_urls_gives_the_same_rows(official_server, disk_builder, tmp_path):
    streamed = ArrCocVqa(config_name="small", cache_dir=str(tmp_path), **CAPS).as_streaming_dataset()
    expected = disk_builder.as_dataset()
    for split in SPLITS:
        assert raw_rows(streamed[split]) == raw_rows(expected[split])
    assert_no_whole_image_archive(official_server)
