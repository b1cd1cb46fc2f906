"""Label maps in the dataset zip: one `imgNNNNNNNN.mask.npy` beside each image (issue 13).

uint8 [R, R], 0 background, 1 liver, 2 tumour, cut with the image's own crop box and resized
with nearest neighbour; `.npy` keeps the zip readable by StyleGAN2-ADA's own loader, which
takes every image file in a zip as a training image. Also each image's pixel spacing.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from app.imaging.crop import crop_and_resize_mask
from app.models import DatasetVersion, Volume

MASK_LABELS = {"0": "background", "1": "liver", "2": "tumour"}
MASK_SUFFIX = ".mask.npy"


def has_masks(dataset: DatasetVersion) -> bool:
    """Whether a version carries label maps."""
    return bool(getattr(dataset, "masks", False))


def mask_name(image_file: str) -> str:
    """The label map stored beside an image: img00000000.png -> img00000000.mask.npy."""
    return image_file.removesuffix(".png") + MASK_SUFFIX


def encode_mask(labels: np.ndarray) -> bytes:
    """uint8 [R, R] as .npy (C order, fixed header): same labels, same bytes."""
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(labels, dtype=np.uint8), allow_pickle=False)
    return buf.getvalue()


def write_mask(labels: np.ndarray, box: tuple, resolution: int, workdir: Path, image: str):
    """The slice's label map through the image's crop box; (file, sha256, provenance entry)."""
    resized = crop_and_resize_mask(labels, box, resolution)
    data = encode_mask(resized)
    name = mask_name(image)
    (workdir / name).write_bytes(data)
    entry = {
        "file": name,
        "liver_pixels": int(np.count_nonzero(resized == 1)),
        "tumour_pixels": int(np.count_nonzero(resized == 2)),
    }
    return name, hashlib.sha256(data).hexdigest(), entry


def pixel_spacing(volume: Volume, side: int, resolution: int) -> list[float]:
    """[row, column] mm of an exported pixel: display rows run along y, columns along x."""
    sx, sy = (float(v) for v in volume.spacing[:2])
    return [round(sy * side / resolution, 6), round(sx * side / resolution, 6)]


def masks_doc(images: Sequence[Any]) -> dict | None:
    """medsynth.json's description of the label maps, or None for a version without them."""
    if not any(im.mask_file for im in images):
        return None
    return {
        "format": "npy",
        "dtype": "uint8",
        "suffix": MASK_SUFFIX,
        "labels": MASK_LABELS,
        "resample": "the image's crop box, PIL NEAREST (label values are never mixed)",
        "num_with_liver": sum(bool(im.provenance["mask"]["liver_pixels"]) for im in images),
        "num_with_tumour": sum(bool(im.provenance["mask"]["tumour_pixels"]) for im in images),
    }


def median_spacing(images: Sequence[Any]) -> list[float] | None:
    """The version's pixel spacing for generated NIfTI: the median over its images."""
    spacings = [im.provenance.get("pixel_spacing_mm") for im in images]
    if not spacings or any(sp is None for sp in spacings):
        return None
    return [round(float(v), 6) for v in np.median(np.asarray(spacings, float), axis=0)]
