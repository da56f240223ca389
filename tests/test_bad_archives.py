"""Bad archives and images never become data: a one-line error naming archive and member, or a
counted `corrupt_image`.

Issue 9, item 13 (image size limits), what tests/test_fuzz_mirror.py found in zip records, and
review item 5 (a duplicated zip member).
"""

import os
import re
import shutil
import struct
import warnings
import zipfile

import pytest
from bad_inputs import (
    VQAV2_ANNOTATIONS,
    VQAV2_QUESTIONS,
    append_member,
    build_failures,
    damaged,
    image_zip,
    patched_zip,
    set_first,
    small_jpeg,
)
from helpers import make_mirror
from PIL import Image

from arr_coc.pipeline import images
from arr_coc.process.errors import SourceFormatError


@pytest.fixture(scope="module")
def mirror(tmp_path_factory):
    path = tmp_path_factory.mktemp("bad-records-mirror")
    make_mirror(path, images_per_split=4, questions_per_image=2)
    return path


# -- 13: image size limits --------------------------------------------------------------------


def test_oversized_zip_member_is_corrupt_without_being_read(tmp_path, monkeypatch):
    # A valid JPEG followed by zeros: PIL accepts trailing data, so only the size limit stops a
    # 64 MB row. The member compresses to about 64 kB, as a real zip bomb would.
    archive = tmp_path / "train2014.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as handle:
        handle.writestr("train2014/big.jpg", small_jpeg() + bytes(images.MAX_IMAGE_BYTES))
        handle.writestr("train2014/ok.jpg", small_jpeg())
    assert os.path.getsize(archive) < 1_000_000
    reads = []
    original_read = zipfile.ZipExtFile.read
    monkeypatch.setattr(zipfile.ZipExtFile, "read", lambda self, n=-1: reads.append(self.name) or original_read(self, n))
    store = images.ImageStore(str(archive), "train2014")
    assert store.fetch("big.jpg") == images.CORRUPT_IMAGE
    assert "train2014/big.jpg" not in reads
    assert store.fetch("ok.jpg").width == 16
    store.close()


def test_oversized_image_from_a_url_is_corrupt(tmp_path):
    folder = tmp_path / "train2014"
    folder.mkdir()
    (folder / "big.jpg").write_bytes(small_jpeg() + bytes(images.MAX_IMAGE_BYTES))
    (folder / "ok.jpg").write_bytes(small_jpeg())
    store = images.ImageStore(None, "train2014", url_template=f"file://{tmp_path}/{{folder}}/{{file_name}}")
    assert store.fetch("big.jpg") == images.CORRUPT_IMAGE
    assert store.fetch("ok.jpg").height == 16


def test_decompression_bomb_warning_is_corrupt_and_global_warnings_untouched():
    data = bytearray(small_jpeg())
    sof = data.index(b"\xff\xc0")
    data[sof + 5 : sof + 9] = struct.pack(">HH", 10000, 10000)  # 1e8 pixels: between 1x and 2x PIL's limit
    assert Image.MAX_IMAGE_PIXELS < 10000 * 10000 < 2 * Image.MAX_IMAGE_PIXELS
    filters = list(warnings.filters)
    with pytest.raises(images.CorruptImage, match="decompression bomb"):
        images.inspect_image(bytes(data))
    assert images.CheckMemo().inspect(small_jpeg())[:2] == (16, 16)
    assert warnings.filters == filters


# -- found by tests/test_fuzz_mirror.py ----------------------------------------------------------


def test_image_member_with_an_unknown_compression_method_is_corrupt(tmp_path):
    archive = image_zip(tmp_path)
    patched_zip(archive, b"PK\x01\x02", 10, "<H", lambda method: 99)  # the central directory's method
    assert images.ImageStore(str(archive), "train2014").fetch("a.jpg") == images.CORRUPT_IMAGE


def test_unreadable_image_member_names_archive_and_member(tmp_path):
    # A central directory offset that points past itself makes every member offset negative: zipfile
    # then fails with a bare "[Errno 22] Invalid argument".
    archive = image_zip(tmp_path)
    patched_zip(archive, b"PK\x05\x06", 16, "<I", lambda offset: offset + 100_000)
    with pytest.raises(SourceFormatError, match=rf"^{re.escape(str(archive))}: cannot read image train2014/a\.jpg \(.*Invalid argument"):
        images.ImageStore(str(archive), "train2014").fetch("a.jpg")


def test_annotation_member_that_cannot_be_opened_names_its_archive(mirror, tmp_path):
    bad = tmp_path / "bad-mirror"
    shutil.copytree(mirror, bad)
    patched_zip(bad / VQAV2_ANNOTATIONS[0], b"PK\x03\x04", 0, "<I", lambda magic: magic ^ 8)  # "Bad magic number"
    reasons = build_failures(bad, tmp_path, ("vqav2",))
    assert reasons and all(reason.startswith(f"{bad / VQAV2_ANNOTATIONS[0]}: member {VQAV2_ANNOTATIONS[1]} cannot be opened") for reason in reasons)


def test_image_id_mismatch_names_the_questions_file_too(mirror, tmp_path):
    bad = damaged(mirror, tmp_path, *VQAV2_QUESTIONS, lambda doc: set_first(doc["questions"], "image_id", 1))
    reasons = build_failures(bad, tmp_path, ("vqav2",))
    assert reasons and re.search(rf"differs from the question's image_id 1 in {re.escape(str(bad / VQAV2_QUESTIONS[0]))}:{VQAV2_QUESTIONS[1]}$", reasons[0])


def test_io_error_without_a_file_name_gets_the_shards_file(mirror, tmp_path, monkeypatch):
    import arr_coc.pipeline.shard

    def failing_rows(*args, **kwargs):
        raise OSError(5, "Input/output error")  # as a failing disk reports it: no file name

    monkeypatch.setattr(arr_coc.pipeline.shard, "caption_rows", failing_rows)
    [reason, *_] = build_failures(mirror, tmp_path, ("coco",))
    assert reason == f"{mirror}/annotations_trainval2014.zip:annotations/captions_train2014.json: building coco train failed: OSError: [Errno 5] Input/output error"


# -- review item 5: a duplicated zip member ------------------------------------------------------


def test_duplicated_annotation_member_fails_the_build_instead_of_emptying_the_split(mirror, tmp_path):
    # zipfile reads the last copy: `{"questions": []}` made vqav2/train all no_annotation, exit 0.
    bad = tmp_path / "bad-mirror"
    shutil.copytree(mirror, bad)
    archive, member = VQAV2_QUESTIONS
    append_member(bad / archive, member, b'{"questions": []}')
    reasons = build_failures(bad, tmp_path, ("vqav2",))
    assert reasons and all(reason == f"{bad / archive}: has more than one member named {member} (zipfile would read only the last)" for reason in reasons)


def test_duplicated_image_member_is_an_error_not_a_guess(tmp_path):
    archive = image_zip(tmp_path)
    append_member(archive, "train2014/b.jpg", small_jpeg())
    append_member(archive, "train2014/a.jpg", b"another picture")
    store = images.ImageStore(str(archive), "train2014")
    assert store.fetch("b.jpg").width == 16  # only the duplicated name is refused
    with pytest.raises(SourceFormatError, match=rf"^{re.escape(str(archive))}: has more than one member named train2014/a\.jpg "):
        store.fetch("a.jpg")
    store.close()
