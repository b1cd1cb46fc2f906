"""What `generate` and its raw variant (generate_raw.py) share: seeds and their latents,
pixel conversions (uint8/16, Hounsfield units), and the PNG and NIfTI writers. Below both
modules, so neither imports the other for them."""

from __future__ import annotations

import re

import numpy as np
import torch
from PIL import Image


def parse_seeds(text: str) -> list[int]:
    """'0-99', '1,5,7' or a mix like '0-3,10' -> list of ints."""
    seeds: list[int] = []
    for part in text.split(","):
        part = part.strip()
        m = re.fullmatch(r"(\d+)\s*-\s*(\d+)", part)
        if m:
            lo, hi = int(m.group(1)), int(m.group(2))
            if hi < lo:
                raise ValueError(f"seed range {part!r} runs backwards")
            seeds.extend(range(lo, hi + 1))
        elif re.fullmatch(r"\d+", part):
            seeds.append(int(part))
        else:
            raise ValueError(f"bad seed list {text!r}: use e.g. 0-99 or 1,5,7")
    return seeds


def seed_latents(seeds: list[int], z_dim: int) -> torch.Tensor:
    """[N, z_dim] latents, one RandomState per seed (as the reference's generate does)."""
    z = [np.random.RandomState(s).randn(1, z_dim) for s in seeds]
    return torch.from_numpy(np.concatenate(z)).float()


def to_uint(img: torch.Tensor, bits: int = 8) -> np.ndarray:
    """[-1, 1] floats -> uint8 (0..255) or uint16 (0..65535), same shape."""
    top = 255 if bits == 8 else 65535
    x = ((img.float() + 1) * (top / 2)).round().clamp(0, top)
    return x.numpy().astype(np.uint8 if bits == 8 else np.uint16)


def to_hu(img: torch.Tensor, mapping: dict) -> np.ndarray:
    """[-1, 1] floats -> float32 HU with the dataset's linear pixel mapping {"lo", "hi"}."""
    x = (img.float().clamp(-1, 1) + 1) / 2
    return (mapping["lo"] + x * (mapping["hi"] - mapping["lo"])).numpy().astype(np.float32)


def save_png(arr: np.ndarray, path: str) -> None:
    """Save [R, R] uint8 as L or uint16 as I;16."""
    if arr.dtype == np.uint16:
        h, w = arr.shape
        Image.frombytes("I;16", (w, h), arr.astype("<u2").tobytes()).save(path, format="PNG")
    else:
        Image.fromarray(arr.astype(np.uint8)).save(path, format="PNG")


def nifti_affine(spacing: tuple[float, float] | None) -> np.ndarray:
    """Voxel -> mm for [X = column, Y = row, 1]; 1 mm voxels when the spacing is unknown."""
    affine = np.eye(4)
    if spacing is not None:
        affine[0, 0], affine[1, 1] = spacing[1], spacing[0]
    return affine


def save_nifti(
    hu: np.ndarray,
    path: str,
    window: dict | None = None,
    spacing: tuple[float, float] | None = None,
) -> None:
    """One axial slice as [X, Y, 1] (x = image column, y = image row): float32 HU, or a uint8
    label map; `spacing` (row, column mm) goes into the affine, else 1 mm voxels."""
    import nibabel as nib

    data = np.ascontiguousarray(hu.T[:, :, None])
    nii = nib.Nifti1Image(data, nifti_affine(spacing))
    nii.header.set_xyzt_units("mm")
    nii.header["descrip"] = b"MedSynth SYNTHETIC image (generated; not a patient scan)"
    if window:
        nii.header["cal_min"], nii.header["cal_max"] = window["lo"], window["hi"]
    nib.save(nii, path)


def hu_override(text: str | None) -> dict | None:
    """`--hu LO,HI` as a pixel mapping, or None when not given."""
    if not text:
        return None
    try:
        lo, hi = (float(v) for v in text.split(","))
    except ValueError as e:
        raise ValueError(f"--hu expects LO,HI, got {text!r}") from e
    return {"lo": lo, "hi": hi, "source": "--hu"}
