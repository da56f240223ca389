"""Image archives: deterministic, textured JPEGs (and the odd grayscale, CMYK or PNG-in-.jpg file).

Pictures are rolled and stamped copies of one textured base per (size, seed), so they are cheap to make
yet compress like photos (about 100 kB at 640x480), which benchmarks need.  Encoding uses fixed settings
and no metadata, so bytes depend only on (seed, size, image key, mode); broken images are truncated here.
"""
from __future__ import annotations

import hashlib
import io
import os
import zipfile
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Iterable

import numpy as np
from PIL import Image

from sample_mirror.near_duplicates import rehost
from sample_mirror.plan import ImageZipPlan
from sample_mirror.zipjson import AtomicZip, zip_info

JPEG_QUALITY = 90  # fixed, like every encoder setting, so bytes repeat; 90 gives photo-like sizes
# Recorded in the manifest; raised whenever the pictures change, so that scripts/bench.py regenerates a mirror
# it would otherwise reuse (2: each picture has a layout of its own, see TextureFactory).
PICTURE_VERSION = 2


class TextureFactory:
    """Cheap, textured, deterministic pictures: one noise texture per (size, seed), rolled and stamped per
    image so every file's bytes differ, plus a layout of its own per image (a smooth 8x8 field of random
    colours) so that every picture differs from the others where a perceptual hash looks. The texture makes
    640x480 JPEGs about 100 kB at quality 90, close to real photos, which matters for benchmarks.

    Without the layout, rolled copies of one texture collide under pHash (837 pairs of identical hashes among 5,007
    benchmark images); with it the hashes are as far apart as random ones (no two of 5,000 within 10 bits),
    so a near-duplicate audit of the mirror finds only what was planted (`near_duplicates=True`)."""

    def __init__(self, size: tuple[int, int], seed: int):
        width, height = size
        rng = np.random.default_rng(seed)
        block = 8
        coarse = rng.integers(0, 256, (height // block + 2, width // block + 2, 3)).astype(np.float32)
        smooth = np.repeat(np.repeat(coarse, block, 0), block, 1)[:height, :width]
        smooth = _box_blur(_box_blur(smooth, block, 0), block, 1)
        noise = rng.normal(0, 6, (height, width, 3))
        # At most 128, so that adding a layout of at most 127 stays within uint8.
        self.detail = np.clip(0.5 * smooth + noise, 0, 128).astype(np.uint8)

    def pixels(self, key: str) -> np.ndarray:
        digest = hashlib.blake2b(key.encode(), digest_size=16).digest()
        height, width = self.detail.shape[:2]
        dy = int.from_bytes(digest[:4], "little") % max(height, 1)
        dx = int.from_bytes(digest[4:8], "little") % max(width, 1)
        arr = np.roll(self.detail, (dy, dx), axis=(0, 1))
        layout = np.random.default_rng(int.from_bytes(digest[8:], "little")).integers(0, 128, (8, 8, 3), dtype=np.uint8)
        arr += np.asarray(Image.fromarray(layout, "RGB").resize((width, height), Image.Resampling.BICUBIC))
        stamp = np.frombuffer(digest, dtype=np.uint8)[: min(16, width)]
        arr[0, : len(stamp), 0] = stamp  # a few id-derived pixels make even tiny images unique
        return arr


class ImageSizes:
    """Each image's size: one size for every image (the default), or, given several, one of them per image id
    (a seeded hash, so the same photo has the same size in every archive and in COCO's image lists).  Every
    size has its own texture; with one size the pictures, and so the bytes, are those of a TextureFactory."""

    def __init__(self, sizes, seed: int):
        self.sizes = [tuple(int(v) for v in size) for size in sizes]
        self.seed = seed
        self._textures: dict = {}

    def of(self, image_id) -> tuple[int, int]:
        if len(self.sizes) == 1:
            return self.sizes[0]
        return self.sizes[zlib.crc32(f"{self.seed}:{image_id}".encode()) % len(self.sizes)]

    def texture(self, image_id) -> TextureFactory:
        size = self.of(image_id)
        if size not in self._textures:
            self._textures[size] = TextureFactory(size, self.seed)
        return self._textures[size]


def _box_blur(arr: np.ndarray, k: int, axis: int) -> np.ndarray:
    pad = [(0, 0)] * arr.ndim
    pad[axis] = (k, 0)
    csum = np.cumsum(np.pad(arr, pad, mode="edge"), axis=axis)
    upper = np.take(csum, range(k, csum.shape[axis]), axis=axis)
    lower = np.take(csum, range(0, csum.shape[axis] - k), axis=axis)
    return (upper - lower) / k


def encode_image(texture: TextureFactory, key: str, mode: str) -> bytes:
    """Encode one image; fixed settings and no metadata, so bytes depend only on (seed, size, key, mode)."""
    image = Image.fromarray(texture.pixels(key), "RGB")
    buf = io.BytesIO()
    if mode == "PNG":  # a PNG file named .jpg, as occasionally found in scraped image sets
        image.save(buf, "PNG", optimize=False, compress_level=6)
    else:
        if mode != "RGB":
            image = image.convert(mode)
        image.save(buf, "JPEG", quality=JPEG_QUALITY, optimize=False, progressive=False, subsampling=2)
    return buf.getvalue()


def truncate_jpeg(data: bytes) -> bytes:
    """Keep the first ~60% of a JPEG, never less than its headers: Image.open still succeeds, only
    decoding the pixels (load()) notices the damage."""
    start_of_scan = data.find(b"\xff\xda")
    cut = max(int(len(data) * 0.6), start_of_scan + 16)
    if start_of_scan < 0 or cut >= len(data) - 2:
        raise ValueError("image too small to truncate meaningfully")
    return data[:cut]


def write_image_zip(out: Path, zip_plan: ImageZipPlan, sizes: ImageSizes, extra_ids: Iterable = ()) -> dict:
    """Write one image archive (members stored, sorted by name, with the folder entry first).

    Returns {image_id: mode} of the images written."""
    modes = dict(zip_plan.modes)
    for image_id in extra_ids:
        modes.setdefault(image_id, "RGB")
    members = sorted((zip_plan.member(i), i) for i in modes if i not in zip_plan.missing)

    def build(item):
        member, image_id = item
        if image_id in zip_plan.copies:  # a planted near duplicate: the original, re-hosted
            original_zip, original_id, scale, quality = zip_plan.copies[image_id]
            return rehost(encode_image(sizes.texture(original_id), f"{original_zip}:{original_id}", "RGB"), scale, quality)
        data = encode_image(sizes.texture(image_id), f"{zip_plan.name}:{image_id}", modes[image_id])
        return truncate_jpeg(data) if image_id in zip_plan.corrupt else data

    # Pillow releases the GIL while encoding, so threads help on big mirrors; map() keeps the order, and
    # batches bound the memory held by encoded images waiting to be written.
    workers = min(8, os.cpu_count() or 1) if len(members) > 200 else 1
    with AtomicZip(out / zip_plan.name) as zf, ThreadPoolExecutor(workers) as pool:
        zf.writestr(zip_info(zip_plan.prefix, zipfile.ZIP_STORED), b"")  # the folder entry real zips have
        for start in range(0, len(members), 256):
            batch = members[start:start + 256]
            encoded = pool.map(build, batch) if workers > 1 else map(build, batch)
            for (member, _), data in zip(batch, encoded):
                zf.writestr(zip_info(member, zipfile.ZIP_STORED), data)
    return modes
