"""The blinded encoder: real and synthetic images both pass through `blind_png`, so nothing but
the pixels tells them apart (same size, mode, PNG options; no text chunks or other metadata)."""

from __future__ import annotations

import io
import struct

import numpy as np
from PIL import Image

from app.errors import InvalidInput
from app.imaging.render import png_bytes

COMPRESS_LEVEL = 6  # fixed, never "optimize": the same options for every image
ALLOWED_CHUNKS = (b"IHDR", b"IDAT", b"IEND")


def to_gray8(img: Image.Image) -> np.ndarray:
    """8-bit grayscale pixels; 16-bit images map 0..65535 linearly onto 0..255."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(img, dtype=np.float64)
        return np.clip(np.rint(arr * (255.0 / 65535.0)), 0, 255).astype(np.uint8)
    if img.mode != "L":
        img = img.convert("L")
    return np.asarray(img, dtype=np.uint8)


def blind_png(data: bytes, size: int) -> bytes:
    """Decode any PNG and re-encode it as a bare 8-bit grayscale PNG of `size` x `size`.

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
    return encode_gray8(pixels)


def encode_gray8(pixels: np.ndarray) -> bytes:
    """The one PNG writer of the viewer, with the study's fixed compression level."""
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
