"""`metadata.phash`: the image's 64-bit perceptual hash, as DESIGN.md ("Example schema") defines it.

    im = PIL.Image.open(BytesIO(image_bytes))
    im.draft("L", (im.width // 4, im.height // 4))
    str(imagehash.phash(im))                       # hash_size 8: 16 lowercase hex digits

The draft makes libjpeg decode a JPEG at 1/4 scale, in grayscale (DCT scaling: it still walks all the
entropy-coded data, so a truncated file still fails to load); other formats ignore it and decode whole.
On the real COCO, GQA and Visual Genome photos in ../shared/realdata the result is within 2 bits of
`imagehash.phash` of the fully decoded image, so hashes that other people computed stay comparable.
An image under 4 pixels on a side has no 1/4 scale (`draft` would divide by zero): it decodes whole.

The card's `# snippet: phash` is this same definition for users (tests/test_phash.py checks both agree).
"""

import imagehash
import numpy as np
import scipy.fftpack  # noqa: F401 - imagehash.phash imports it (0.3 s): here, once, before num_proc workers fork
from PIL import Image

# 1/4 of each side: about half the cost of a full decode and hash of a 640x480 photo.
DRAFT_DIVISOR = 4


def draft_for_hash(image: Image.Image) -> None:
    """Ask the decoder for the hash's input (a grayscale JPEG at 1/4 scale), before `load()`."""
    if image.width >= DRAFT_DIVISOR and image.height >= DRAFT_DIVISOR:
        image.draft("L", (image.width // DRAFT_DIVISOR, image.height // DRAFT_DIVISOR))


def perceptual_hash(image: Image.Image) -> str:
    """imagehash's pHash of an image opened and drafted with `draft_for_hash`: 16 hex digits.

    The same digits as `str(imagehash.phash(image))` (its 64 bits in row order, first bit highest),
    without imagehash's detour through a string of 64 "0"/"1" characters (about 10 of the hash's 200 us)."""
    return np.packbits(imagehash.phash(image).hash.flatten()).tobytes().hex()


def hashes_to_uint64(hashes) -> np.ndarray:
    """16-hex-digit hashes -> uint64 array (the bit order of imagehash's hex: first hex digit = top bits)."""
    hashes = list(hashes)
    if not hashes:
        return np.zeros(0, dtype=np.uint64)
    bad = next((value for value in hashes if not isinstance(value, str) or len(value) != 16), None)
    if bad is not None:  # one short hash would shift every later one in the joined hex
        raise ValueError(f"a perceptual hash is 16 hex digits, got {bad!r}")
    return np.frombuffer(bytes.fromhex("".join(hashes)), dtype=">u8").astype(np.uint64)
