"""Small NIfTI files for ingest tests: phantoms, odd orientations, scaled and broken files."""

from __future__ import annotations

import gzip
from pathlib import Path

import nibabel as nib
import numpy as np
from nibabel.orientations import apply_orientation, axcodes2ornt, inv_ornt_aff, ornt_transform

from app.phantom.volume import Phantom, make_phantom, write_phantom

SMALL = {"size": 64, "slices": 12}


def phantom_pair(folder: Path, n: int = 0, seed: int = 0, tumours: int = 1) -> tuple:
    """LiTS-named volume-N.nii.gz and segmentation-N.nii.gz of a 64×64×12 phantom."""
    phantom = make_phantom(seed, tumours=tumours, **SMALL)
    volume, mask = folder / f"volume-{n}.nii.gz", folder / f"segmentation-{n}.nii.gz"
    write_phantom(phantom, volume, mask)
    return phantom, volume, mask


def small_phantom(seed: int = 0, tumours: int = 1) -> Phantom:
    return make_phantom(seed, tumours=tumours, **SMALL)


def save(path: Path, data: np.ndarray, affine: np.ndarray | None = None) -> Path:
    """Any array as NIfTI (nibabel picks .nii or .nii.gz from the name)."""
    img = nib.Nifti1Image(data, np.diag([0.8, 0.8, 2.5, 1.0]) if affine is None else affine)
    img.set_qform(img.affine, code=1)
    img.set_sform(img.affine, code=1)
    nib.save(img, str(path))
    return path


def reoriented(ras: np.ndarray, affine: np.ndarray, codes: tuple[str, str, str]) -> tuple:
    """The same image stored with voxel axes `codes` (e.g. ('P', 'S', 'L'))."""
    transform = ornt_transform(axcodes2ornt("RAS"), axcodes2ornt(codes))
    data = apply_orientation(ras, transform)
    return np.ascontiguousarray(data), affine @ inv_ornt_aff(transform, ras.shape)


def save_scaled(path: Path, raw: np.ndarray, slope: float, inter: float) -> Path:
    """An uncompressed .nii whose stored voxels must be scaled: value = raw * slope + inter."""
    header = nib.Nifti1Header()
    header.set_data_shape(raw.shape)
    header.set_data_dtype(raw.dtype)
    affine = np.diag([0.8, 0.8, 2.5, 1.0])
    header.set_qform(affine, code=1)
    header.set_sform(affine, code=1)
    header.set_slope_inter(slope, inter)
    header["vox_offset"] = 352
    with open(path, "wb") as f:
        header.write_to(f)  # 348 bytes plus the 4-byte extension flag
        f.seek(352)
        f.write(raw.tobytes(order="F"))
    return path


def truncated_gzip(src: Path, dst: Path) -> Path:
    data = src.read_bytes()
    dst.write_bytes(data[: len(data) // 2])
    return dst


def corrupt_gzip(src: Path, dst: Path) -> Path:
    """Deflate data damaged in the middle (header and length intact)."""
    data = bytearray(src.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 64] = bytes(255 - b for b in data[middle : middle + 64])
    dst.write_bytes(bytes(data))
    return dst


def gzip_bytes(data: bytes, path: Path) -> Path:
    path.write_bytes(gzip.compress(data))
    return path


def tree_files(folder: Path) -> list[Path]:
    """Every file under `folder` (empty folders do not count as leftovers)."""
    return sorted(p for p in folder.rglob("*") if p.is_file())
