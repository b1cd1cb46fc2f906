"""Axial slices for display (radiological convention) and their PNG encoding."""

from __future__ import annotations

import struct
import zlib

import numpy as np

from app.imaging.window import Window, to_uint8

LIVER_RGB = (64, 224, 112)
TUMOUR_RGB = (255, 150, 40)
LIVER_INDEX, TUMOUR_INDEX = 254, 255  # palette entries; gray uses indices 0..253
_TO_253 = ((np.arange(256) * 253 + 127) // 255).astype(np.uint8)
_PALETTE = (
    b"".join(bytes([round(i * 255 / 253)] * 3) for i in range(254))
    + bytes(LIVER_RGB)
    + bytes(TUMOUR_RGB)
)


def axial_display(volume: np.ndarray, index: int) -> np.ndarray:
    """Slice `index` of a RAS [x, y, z] array as [rows, cols]: anterior up, patient right left.

    RAS x grows toward the patient's right, so columns run from high x to low x; y grows
    anteriorly, so rows run from high y (top) to low y.
    """
    return volume[::-1, ::-1, index].T


def outline(mask: np.ndarray) -> np.ndarray:
    """Pixels of `mask` with at least one 4-neighbour outside it (a one-pixel contour)."""
    inner = mask.copy()
    inner[1:, :] &= mask[:-1, :]
    inner[:-1, :] &= mask[1:, :]
    inner[:, 1:] &= mask[:, :-1]
    inner[:, :-1] &= mask[:, 1:]
    return mask & ~inner


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_bytes(image: np.ndarray, palette: bytes | None = None, level: int = 1) -> bytes:
    """8-bit grayscale (or palette) PNG with only IHDR, (PLTE,) IDAT and IEND: no row filter,
    zlib `level` (1 for the viewer: ~2 ms for 512²), no text or time chunks."""
    rows, cols = image.shape
    raw = np.zeros((rows, cols + 1), np.uint8)  # each row starts with filter type 0
    raw[:, 1:] = image
    color_type = 0 if palette is None else 3
    header = struct.pack(">IIBBBBB", cols, rows, 8, color_type, 0, 0, 0)
    return b"".join(
        [
            b"\x89PNG\r\n\x1a\n",
            _chunk(b"IHDR", header),
            _chunk(b"PLTE", palette) if palette else b"",
            _chunk(b"IDAT", zlib.compress(raw.tobytes(), level)),
            _chunk(b"IEND", b""),
        ]
    )


def slice_png(hu: np.ndarray, window: Window, labels: np.ndarray | None = None) -> bytes:
    """Grayscale PNG of a display-oriented HU slice, or with liver and tumour outlines.

    The outlined version is a palette PNG (254 gray levels plus two colours): as small and
    fast as grayscale, where RGB would triple the bytes to compress.
    """
    gray = to_uint8(hu, window)
    return gray_png(gray, labels)


def gray_png(gray: np.ndarray, labels: np.ndarray | None = None) -> bytes:
    """An 8-bit gray image as PNG, with liver and tumour outlines from `labels` when given."""
    if labels is None:
        return png_bytes(gray)
    indexed = _TO_253[gray]
    indexed[outline(labels >= 1)] = LIVER_INDEX
    indexed[outline(labels == 2)] = TUMOUR_INDEX
    return png_bytes(indexed, _PALETTE)
