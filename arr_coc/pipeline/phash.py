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

import numpy as np
import scipy.fftpack  # imported (0.3 s) here, once, before num_proc workers fork
from PIL import Image

# 1/4 of each side: about half the cost of a full decode and hash of a 640x480 photo.
DRAFT_DIVISOR = 4
# imagehash.phash(hash_size=8, highfreq_factor=4): an 8x8 corner of the DCT of a 32x32 picture.
HASH_SIDE = 8
HASH_INPUT_SIDE = HASH_SIDE * 4
HASH_BITS = HASH_SIDE * HASH_SIDE


def draft_for_hash(image: Image.Image) -> None:
    """Ask the decoder for the hash's input (a grayscale JPEG at 1/4 scale), before `load()`."""
    if image.width >= DRAFT_DIVISOR and image.height >= DRAFT_DIVISOR:
        image.draft("L", (image.width // DRAFT_DIVISOR, image.height // DRAFT_DIVISOR))


def perceptual_hash(image: Image.Image) -> str:
    """imagehash's pHash of an image opened and drafted with `draft_for_hash`: 16 hex digits.

    The steps of imagehash 4.3.2's `phash` (hash_size 8), call for call, so every float is the one it
    computes: grayscale, LANCZOS to 32x32, scipy.fftpack's DCT down the columns then along the rows, the
    8x8 lowest frequencies against their median. Without its overhead, about a quarter of the hash's time
    on a drafted COCO photo (tests/test_phash.py checks the digits equal `str(imagehash.phash(image))`):
    no grayscale copy of an image the draft already made grayscale (`convert("L")` of an "L" image is a
    copy), the median as the mean of the two middle values of the sorted 64 (what `numpy.median` computes
    for an even count), and the 64 bits as hex through numpy instead of a string of "0"s and "1"s."""
    if image.mode != "L":
        image = image.convert("L")
    pixels = np.asarray(image.resize((HASH_INPUT_SIDE, HASH_INPUT_SIDE), Image.Resampling.LANCZOS))
    dct = scipy.fftpack.dct(scipy.fftpack.dct(pixels, axis=0), axis=1)
    low = dct[:HASH_SIDE, :HASH_SIDE]
    ordered = np.sort(low, axis=None)
    median = (ordered[HASH_BITS // 2 - 1] + ordered[HASH_BITS // 2]) / 2
    return np.packbits(low > median).tobytes().hex()


def hashes_to_uint64(hashes) -> np.ndarray:
    """16-hex-digit hashes -> uint64 array (the bit order of imagehash's hex: first hex digit = top bits)."""
    hashes = list(hashes)
    if not hashes:
        return np.zeros(0, dtype=np.uint64)
    bad = next((value for value in hashes if not isinstance(value, str) or len(value) != 16), None)
    if bad is not None:  # one short hash would shift every later one in the joined hex
        raise ValueError(f"a perceptual hash is 16 hex digits, got {bad!r}")
    return np.frombuffer(bytes.fromhex("".join(hashes)), dtype=">u8").astype(np.uint64)
