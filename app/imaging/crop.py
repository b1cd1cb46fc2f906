"""The square crop around the body and its resize: how a display slice becomes a dataset image.

Largest body component (> -500 HU) -> square centred on its bounding box (4 % margin, air
outside the image) -> LANCZOS resize on float HU. Masks follow the same box with nearest
neighbour, so an image and its label map stay aligned pixel for pixel.
"""

from __future__ import annotations

import numpy as np
from PIL import Image
from scipy import ndimage

BODY_THRESHOLD_HU = -500.0
AIR_HU = -1000.0
CROP_MARGIN = 0.04  # of the body's larger side, on each side


def body_crop_box(hu: np.ndarray) -> tuple[int, int, int]:
    """(top, left, side) of a square centred on the largest body component of a 2D slice."""
    labels, n = ndimage.label(hu > BODY_THRESHOLD_HU)
    if n == 0:
        rows, cols = hu.shape
        r0, r1, c0, c1 = 0, rows, 0, cols
    else:
        sizes = np.bincount(labels.ravel())
        sizes[0] = 0
        body = labels == int(np.argmax(sizes))
        rr, cc = np.flatnonzero(body.any(axis=1)), np.flatnonzero(body.any(axis=0))
        r0, r1, c0, c1 = int(rr[0]), int(rr[-1]) + 1, int(cc[0]), int(cc[-1]) + 1
    side = int(np.ceil(max(r1 - r0, c1 - c0) * (1 + 2 * CROP_MARGIN)))
    top = int(np.floor((r0 + r1 - side) / 2 + 0.5))
    left = int(np.floor((c0 + c1 - side) / 2 + 0.5))
    return top, left, side


def crop_square(hu: np.ndarray, top: int, left: int, side: int) -> np.ndarray:
    """The square [top:top+side, left:left+side] as float32, air wherever it leaves the image."""
    out = np.full((side, side), AIR_HU, dtype=np.float32)
    rows, cols = hu.shape
    r0, r1 = max(top, 0), min(top + side, rows)
    c0, c1 = max(left, 0), min(left + side, cols)
    if r0 < r1 and c0 < c1:
        out[r0 - top : r1 - top, c0 - left : c1 - left] = hu[r0:r1, c0:c1]
    return out


def crop_and_resize(hu: np.ndarray, box: tuple[int, int, int], resolution: int) -> np.ndarray:
    """float32 [resolution, resolution] HU: the crop `box` resized with LANCZOS."""
    square = Image.fromarray(crop_square(hu, *box))  # mode F
    size = (resolution, resolution)
    return np.asarray(square.resize(size, Image.Resampling.LANCZOS), dtype=np.float32)


def crop_and_resize_mask(
    labels: np.ndarray, box: tuple[int, int, int], resolution: int
) -> np.ndarray:
    """uint8 [resolution, resolution] label map: the same crop `box` as the image, background
    outside the slice, resized with nearest neighbour so no label value is ever invented."""
    top, left, side = box
    square = np.zeros((side, side), dtype=np.uint8)
    rows, cols = labels.shape
    r0, r1 = max(top, 0), min(top + side, rows)
    c0, c1 = max(left, 0), min(left + side, cols)
    if r0 < r1 and c0 < c1:
        square[r0 - top : r1 - top, c0 - left : c1 - left] = labels[r0:r1, c0:c1]
    size = (resolution, resolution)
    return np.asarray(Image.fromarray(square).resize(size, Image.Resampling.NEAREST), np.uint8)
