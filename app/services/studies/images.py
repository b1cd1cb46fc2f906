"""The blinded encoder: real and synthetic images both pass through `blind_png`, so nothing but
the pixels tells them apart (same size, mode, PNG options; no text chunks or other metadata).

Two more properties, because a reader sees the bytes, not only the pixels:

- Equal byte length. The IDAT is zlib "stored" (level 0, no compression), so a PNG's length
  depends only on its width and height: every image of a study has the same length, and a
  threshold on size classifies at chance. (A compressed PNG's size follows its texture; on an
  undertrained generator a size threshold told synthetic from real 95 % of the time.)
- Never byte-identical to a dataset's files. Each study draws a random crop offset (ox, oy) in
  {0, 1}² and shows the (R-1) x (R-1) window at that offset, for real and synthetic images
  alike: one edge row and column are dropped, no pixel value is changed (no dither, no
  resampling, so the diagnostic content is untouched), and the image is a different size and
  encoding from the dataset's compressed R x R PNG. This defeats matching files by hash; it
  does not stop someone who holds the dataset images from matching them by correlation, which
  is why the app hides the source images from readers during a study and takes the real
  images from a held-out version by default.
"""

from __future__ import annotations

import io
import struct

import numpy as np
from PIL import Image

from app.errors import InvalidInput
from app.imaging.render import png_bytes

COMPRESS_LEVEL = 0  # zlib "stored": the byte length depends only on the image size
ALLOWED_CHUNKS = (b"IHDR", b"IDAT", b"IEND")


def to_gray8(img: Image.Image) -> np.ndarray:
    """8-bit grayscale pixels; 16-bit images map 0..65535 linearly onto 0..255."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(img, dtype=np.float64)
        return np.clip(np.rint(arr * (255.0 / 65535.0)), 0, 255).astype(np.uint8)
    if img.mode != "L":
        img = img.convert("L")
    return np.asarray(img, dtype=np.uint8)


def blind_png(data: bytes, size: int, offset: tuple[int, int] | None = None) -> bytes:
    """Decode any PNG and re-encode it as a bare, uncompressed 8-bit grayscale PNG; with a
    crop `offset` (ox, oy), the (size-1)² window at that offset (see the module docstring).

    A size mismatch is an error, not a resize: resizing one class only would mark it.
    """
    try:
        with Image.open(io.BytesIO(data)) as img:
            img.load()
            pixels = to_gray8(img)
    except (OSError, ValueError, SyntaxError) as exc:
        raise InvalidInput(f"not a readable image: {exc}") from exc
    if pixels.shape != (size, size):
        raise InvalidInput(
            f"image is {pixels.shape[1]}x{pixels.shape[0]}, the study needs {size}x{size}"
        )
    if offset is not None:
        ox, oy = offset
        if not (0 <= ox <= 1 and 0 <= oy <= 1):
            raise ValueError("the crop offset is 0 or 1 in each direction")
        pixels = pixels[oy : oy + size - 1, ox : ox + size - 1]
    return encode_gray8(pixels)


def png_length(size: int) -> int:
    """The byte length of every blinded PNG of `size` x `size` pixels."""
    return len(encode_gray8(np.zeros((size, size), np.uint8)))


def encode_gray8(pixels: np.ndarray) -> bytes:
    """The one PNG writer of the viewer, with the study's fixed (stored) compression level."""
    return png_bytes(np.ascontiguousarray(pixels, dtype=np.uint8), level=COMPRESS_LEVEL)


def png_chunks(data: bytes) -> list[bytes]:
    """The chunk types of a PNG, in order (for checks that nothing else slipped in)."""
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError("not a PNG")
    kinds, pos = [], 8
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kinds.append(data[pos + 4 : pos + 8])
        pos += 12 + length
    return kinds
