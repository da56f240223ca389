"""metadata.phash: the definition (DESIGN.md, "Example schema"), the card's `phash` snippet, every built row, and
the distances the docs quote, measured on the real photos in ../shared/realdata (skipped when absent).

The definition is imagehash's own `phash` of the image after PIL's 1/4-scale grayscale `draft`; these tests
call imagehash itself (read: imagehash 4.3.2 `phash` = LANCZOS to 32x32 grayscale, 2-D DCT, the 8x8 low
frequencies against their median) rather than re-deriving it.
"""

import collections
import glob
import hashlib
import io
import itertools
import os
import zipfile

import imagehash
import numpy as np
import pytest
from PIL import Image

from helpers import ROOT, make_mirror, prepared, raw_rows, run_readme_snippets
from arr_coc.pipeline import images
from arr_coc.pipeline.phash import draft_for_hash, hashes_to_uint64, perceptual_hash

REALDATA = os.environ.get("ARR_COC_REALDATA") or os.path.join(ROOT, "..", "shared", "realdata")
REAL_PHOTOS = sorted(glob.glob(os.path.join(REALDATA, "coco", "*", "*.jpg")) + glob.glob(os.path.join(REALDATA, "gqa", "images", "*.jpg"))
                     + glob.glob(os.path.join(REALDATA, "vg", "images", "*.jpg")))  # fmt: skip
needs_realdata = pytest.mark.skipif(len(REAL_PHOTOS) < 33, reason=f"the real photos of {REALDATA} are absent")

# The figures docs/near-duplicates.md quotes (33 real photos).
DRAFT_VS_FULL_MAX = 2  # bits between the 1/4-scale hash and imagehash of the whole image
REHOST_MAX = 6  # a copy resized to 50-90 % and re-encoded at quality 70-90
DISTINCT_MIN = 22  # two different photos
RECOMMENDED = 8  # the distance the card recommends


def definition(data: bytes) -> str:
    """DESIGN.md's words, as code."""
    im = Image.open(io.BytesIO(data))
    im.draft("L", (im.width // 4, im.height // 4))
    return str(imagehash.phash(im))


def encoded(mode: str, size=(640, 480), fmt="JPEG", seed=0) -> bytes:
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)
    image = Image.fromarray(small, "RGB").resize(size, Image.Resampling.BICUBIC).convert(mode)
    buffer = io.BytesIO()
    image.save(buffer, fmt, quality=90) if fmt == "JPEG" else image.save(buffer, fmt)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def phash():
    return run_readme_snippets("phash")["phash"]


@pytest.mark.parametrize("mode,fmt,size", [("RGB", "JPEG", (640, 480)), ("L", "JPEG", (359, 640)), ("CMYK", "JPEG", (500, 333)),
                                           ("RGB", "PNG", (64, 48)), ("RGB", "JPEG", (17, 9))])  # fmt: skip
def test_snippet_and_builder_give_the_definition(phash, mode, fmt, size):
    data = encoded(mode, size, fmt)
    value = phash(data)
    assert value == definition(data) == images.inspect_image(data)[2]
    assert len(value) == 16 and int(value, 16) >= 0 and value == value.lower()


# What pictures_for_the_hash makes itself: 202 bit patterns, 4 flat, a ramp, two halves, 5 sizes, 9 modes, 3 encoded.
SYNTHETIC_PICTURES = 225


def pictures_for_the_hash():
    """Drafted and whole pictures of every kind the build meets, and the ties a median can fall on; then the real
    photos, when they are there (the suite runs without them: the tests that need them are skipped)."""
    rng = np.random.default_rng(5)
    for bits in [np.zeros((8, 8), bool), np.ones((8, 8), bool), *(rng.integers(0, 2, (8, 8)).astype(bool) for _ in range(200))]:
        yield Image.fromarray(np.where(bits, 255, 0).astype(np.uint8))
    for value in (0, 1, 127, 255):  # flat: every AC coefficient ties (0 or rounding noise)
        yield Image.new("L", (160, 120), value)
    yield Image.fromarray(np.tile(np.arange(160, dtype=np.uint8), (120, 1)))  # a ramp: half the coefficients 0
    yield Image.fromarray(np.repeat([[0], [255]], 60, axis=0).repeat(160, axis=1).astype(np.uint8))  # two halves
    for size in ((160, 120), (79, 125), (33, 7), (1, 1), (1000, 3)):
        yield Image.fromarray(rng.integers(0, 256, (size[1], size[0]), dtype=np.uint8))
    for mode in ("RGB", "RGBA", "CMYK", "P", "1", "I;16", "I", "F", "LA"):
        yield Image.fromarray(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8), "RGB").convert(mode)
    for data in [encoded(mode, size) for mode, size in (("RGB", (640, 480)), ("L", (359, 640)), ("CMYK", (500, 333)))] + [
        open(path, "rb").read() for path in REAL_PHOTOS
    ]:
        image = Image.open(io.BytesIO(data))
        draft_for_hash(image)
        image.load()
        yield image


def test_the_builders_hash_is_imagehashs_phash():
    """perceptual_hash repeats imagehash.phash's steps without its overhead: the same 16 digits, ties included."""
    compared = 0
    for image in pictures_for_the_hash():
        assert perceptual_hash(image) == str(imagehash.phash(image)), (image.mode, image.size)
        compared += 1
    assert compared == SYNTHETIC_PICTURES + len(REAL_PHOTOS)


def test_imagehash_formats_the_bits_as_the_builder_does():
    rng = np.random.default_rng(5)
    for bits in [np.zeros((8, 8), bool), np.ones((8, 8), bool), *(rng.integers(0, 2, (8, 8)).astype(bool) for _ in range(200))]:
        assert np.packbits(bits.flatten()).tobytes().hex() == str(imagehash.ImageHash(bits))


def test_a_zip_member_read_by_several_sources_is_decoded_once(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(images, "inspect_image", lambda data: calls.append(data) or (1, 1, "0" * 16))
    monkeypatch.setattr(images, "_CHECK_MEMO", images.CheckMemo())
    paths = []
    for name, seed in (("train2014.zip", 1), ("other.zip", 2)):  # the same member name, other bytes
        paths.append(str(tmp_path / name))
        with zipfile.ZipFile(paths[-1], "w") as archive:
            archive.writestr("train2014/a.jpg", encoded("RGB", (64, 48), seed=seed))
    for path in (paths[0], paths[0], paths[1]):  # VQAv2's and COCO's stores share one archive
        store = images.ImageStore(path, "train2014", remember_checks=True)
        assert store.fetch("a.jpg").phash == "0" * 16
        store.close()
    assert len(calls) == 2 and calls[0] != calls[1]


def test_with_two_workers_the_photos_vqav2_and_coco_captions_share_are_decoded_once(tmp_path, monkeypatch):
    """num_proc workers take contiguous runs of shards and each remembers its own checks: VQAv2 and COCO
    captions are generated side by side (inputs.GENERATION_ORDER), so one worker decodes their photos."""
    log = tmp_path / "decodes"
    real_inspect = images.inspect_image

    def logged_inspect(data):
        with open(log, "a") as handle:  # one short append per decode, from either worker
            handle.write(hashlib.sha1(data).hexdigest() + "\n")
        return real_inspect(data)

    monkeypatch.setattr(images, "inspect_image", logged_inspect)
    monkeypatch.setattr(images, "_CHECK_MEMO", images.CheckMemo())  # the workers fork from this process
    make_mirror(tmp_path / "mirror", images_per_split=8, questions_per_image=1, images={"okvqa": 2}, broken=False)
    builder = prepared(tmp_path / "mirror", tmp_path / "cache", "full", num_proc=2)
    decodes = collections.Counter(log.read_text().split())
    sources_of = collections.defaultdict(set)
    for split in ("train", "validation"):
        dataset = builder.as_dataset(split=split)
        names = dataset.features["source"].names
        assert [names[code] for code in dict.fromkeys(dataset["source"])] == ["vqav2", "coco", "gqa", "okvqa"]
        for row in raw_rows(dataset):
            sources_of[hashlib.sha1(row["image"]["bytes"]).hexdigest()].add(names[row["source"]])
    shared = [photo for photo, used_by in sources_of.items() if used_by == {"vqav2", "coco"}]
    assert shared and all(decodes[photo] == 1 for photo in shared)
    # Only OK-VQA's photos, in the other worker beside GQA, may be decoded a second time there. (A GQA
    # n... photo is hashed again by the near-duplicate audit, which reads every n... member of images.zip.)
    coco_photos = [photo for photo, used_by in sources_of.items() if used_by & {"vqav2", "okvqa", "coco"}]
    assert all(decodes[photo] == 1 or "okvqa" in sources_of[photo] and decodes[photo] == 2 for photo in coco_photos)


def test_an_image_under_4_pixels_decodes_whole(phash):
    data = encoded("RGB", (3, 40))
    with pytest.raises(ZeroDivisionError):
        definition(data)  # the definition has no 1/4 scale for it
    assert phash(data) == images.inspect_image(data)[2] == str(imagehash.phash(Image.open(io.BytesIO(data))))


def test_a_png_is_hashed_whole(phash):
    data = encoded("RGB", (640, 480), "PNG")
    assert phash(data) == str(imagehash.phash(Image.open(io.BytesIO(data))))


def test_every_row_carries_the_hash_of_its_image_bytes(mirror, tmp_path, phash):
    builder = prepared(mirror, tmp_path / "cache", "full")
    built = builder.as_dataset()
    streamed = builder.as_streaming_dataset()
    for split in ("train", "validation"):
        rows = raw_rows(built[split])
        assert rows and all(row["metadata"]["phash"] == phash(row["image"]["bytes"]) for row in rows)
        assert [row["metadata"]["phash"] for row in raw_rows(streamed[split])] == [row["metadata"]["phash"] for row in rows]


def test_hex_hashes_become_the_same_uint64():
    values = ["0123456789abcdef", "ffffffffffffffff", "8000000000000000"]
    assert hashes_to_uint64(values).tolist() == [int(value, 16) for value in values]
    with pytest.raises(ValueError, match="16 hex digits"):
        hashes_to_uint64(["0123", "456789abcdef0123"])  # would shift every later hash silently


# -- the distances the docs quote, on real photos ---------------------------------------------------------


def hamming(a: str, b: str) -> int:
    return (int(a, 16) ^ int(b, 16)).bit_count()


def rehosted(data: bytes, scale: float, quality: int) -> bytes:
    with Image.open(io.BytesIO(data)) as image:
        image = image.convert("RGB").resize((round(image.width * scale), round(image.height * scale)), Image.Resampling.BICUBIC)
        buffer = io.BytesIO()
        image.save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def real():
    photos = {}
    for path in REAL_PHOTOS:
        with open(path, "rb") as handle:
            photos[os.path.relpath(path, REALDATA)] = handle.read()
    return photos


@needs_realdata
def test_the_quarter_scale_hash_is_within_2_bits_of_the_full_decode(real, phash):
    distances = [hamming(phash(data), str(imagehash.phash(Image.open(io.BytesIO(data))))) for data in real.values()]
    assert max(distances) <= DRAFT_VS_FULL_MAX


@needs_realdata
def test_rehosted_copies_are_close_and_distinct_photos_far(real, phash):
    hashes = {name: phash(data) for name, data in real.items()}
    rehost = max(hamming(hashes[name], phash(rehosted(data, scale, quality)))
                 for name, data in real.items() for scale in (0.5, 0.6, 0.7, 0.8, 0.9) for quality in (70, 80, 90))  # fmt: skip
    distinct = min(hamming(hashes[a], hashes[b]) for a, b in itertools.combinations(hashes, 2))
    assert rehost <= REHOST_MAX < RECOMMENDED < DISTINCT_MIN <= distinct


@needs_realdata
def test_what_phash_does_not_catch(real, phash):
    """Flips and crops of a real photo are farther than the recommended distance; uniform images collide."""
    for data in real.values():
        with Image.open(io.BytesIO(data)) as image:
            image = image.convert("RGB")
            flipped, cropped = io.BytesIO(), io.BytesIO()
            image.transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(flipped, "JPEG", quality=90)
            w, h = image.size
            image.crop((w // 10, h // 10, w - w // 10, h - h // 10)).save(cropped, "JPEG", quality=90)
        assert hamming(phash(data), phash(flipped.getvalue())) > RECOMMENDED
        assert hamming(phash(data), phash(cropped.getvalue())) > RECOMMENDED
    grey, white = (Image.new("RGB", (640, 480), (level,) * 3) for level in (128, 255))
    as_jpeg = [io.BytesIO() for _ in range(2)]
    grey.save(as_jpeg[0], "JPEG"), white.save(as_jpeg[1], "JPEG")
    assert phash(as_jpeg[0].getvalue()) == phash(as_jpeg[1].getvalue())


def test_the_generation_order_names_every_source_once():
    from arr_coc import schema
    from arr_coc.pipeline.inputs import GENERATION_ORDER

    assert sorted(GENERATION_ORDER) == sorted(schema.SOURCES) and len(set(GENERATION_ORDER)) == len(GENERATION_ORDER)
