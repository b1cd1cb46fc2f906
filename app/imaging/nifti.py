"""NIfTI volumes and masks: validated, scaled to HU, reoriented to RAS, read in slabs.

A `.nii.gz` is decompressed once, completely (so a truncated or corrupt stream is caught
before anything is kept), into a scratch `.nii` that is then memory-mapped; slabs of axial
slices are scaled and reoriented one at a time, so no full-volume float copy is ever made.
"""

from __future__ import annotations

import gzip
import io
import os
import shutil
import struct
import tempfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
from nibabel.filebasedimages import ImageFileError
from nibabel.orientations import apply_orientation, inv_ornt_aff, io_orientation

from app.errors import InsufficientStorage, InvalidInput, InvalidVolume, PayloadTooLarge

SLAB_BYTES = 32 * 1024**2  # float32 working memory per slab
MAX_VOXELS = 2**31
MASK_VALUES = (0, 1, 2)  # LiTS: background, liver, tumour


def nifti_stem(name: str) -> str | None:
    """'volume-3.nii.gz' → 'volume-3'; None for anything that is not .nii or .nii.gz."""
    lower = name.lower()
    for suffix in (".nii.gz", ".nii"):
        if lower.endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)]
    return None


@dataclass
class NiftiSource:
    """An opened, validated image: geometry in RAS and its raw voxels (memory-mapped)."""

    name: str
    raw: np.ndarray  # 3D, source voxel order, on-disk dtype
    slope: float
    inter: float
    ornt: np.ndarray  # source axes → RAS (nibabel orientation array)
    shape: tuple[int, int, int]  # after reorientation to RAS
    affine: np.ndarray  # 4x4, of the RAS array

    @property
    def spacing(self) -> tuple[float, float, float]:
        return tuple(round(float(v), 6) for v in np.linalg.norm(self.affine[:3, :3], axis=0))

    def slabs(self) -> Iterator[tuple[int, np.ndarray]]:
        """(first z, scaled float32 or raw integer slab [x, y, k]) in RAS, bottom to top."""
        axis = int(np.flatnonzero(self.ornt[:, 0] == 2)[0])  # source axis that becomes z
        flipped = self.ornt[axis, 1] < 0
        n = self.raw.shape[axis]
        step = max(1, SLAB_BYTES // (4 * self.shape[0] * self.shape[1]))
        for k0 in range(0, n, step):
            k1 = min(n, k0 + step)
            lo, hi = (n - k1, n - k0) if flipped else (k0, k1)
            index = [slice(None)] * 3
            index[axis] = slice(lo, hi)
            yield k0, apply_orientation(self._scaled(self.raw[tuple(index)]), self.ornt)

    def _scaled(self, raw: np.ndarray) -> np.ndarray:
        if self.slope == 1 and self.inter == 0 and raw.dtype.kind in "iu":
            return np.asarray(raw)
        out = raw.astype(np.float32)
        if self.slope != 1:
            out *= np.float32(self.slope)
        if self.inter != 0:
            out += np.float32(self.inter)
        return out

    def hu_slabs(self) -> Iterator[tuple[int, np.ndarray]]:
        """Slabs as int16 HU: rounded, NaN as air, clipped to the int16 range."""
        for k0, slab in self.slabs():
            if slab.dtype == np.int16:
                yield k0, slab
            elif slab.dtype.kind in "iu" and slab.dtype.itemsize <= 2 and slab.dtype != np.uint16:
                yield k0, slab.astype(np.int16)
            else:
                f = np.nan_to_num(slab.astype(np.float32, copy=False), nan=-1024.0)
                yield k0, np.clip(np.rint(f), -32768, 32767).astype(np.int16)

    def label_slabs(self) -> Iterator[tuple[int, np.ndarray]]:
        """Slabs as uint8 labels; any value outside {0, 1, 2} is InvalidInput."""
        for k0, slab in self.slabs():
            if slab.dtype.kind in "iu" and slab.min() >= 0 and slab.max() <= 2:
                yield k0, slab.astype(np.uint8)
                continue
            bad = ~np.isin(slab, MASK_VALUES)
            if bad.any():
                found = ", ".join(f"{v:g}" for v in np.unique(slab[bad])[:6])
                raise InvalidInput(
                    f"mask {self.name} holds values other than 0, 1, 2 (found {found}); "
                    "a LiTS segmentation uses 0 background, 1 liver, 2 tumour"
                )
            yield k0, slab.astype(np.uint8)


def _header_class(head: bytes, name: str) -> type[nib.Nifti1Image]:
    """NIfTI-1 or NIfTI-2 single-file image class from the first bytes, else InvalidVolume."""
    for endian in "<>":
        if len(head) >= 348 and struct.unpack(endian + "i", head[:4])[0] == 348:
            if head[344:348] == b"n+1\0":
                return nib.Nifti1Image
            if head[344:348] == b"ni1\0":
                raise InvalidVolume(f"{name} is a NIfTI .hdr/.img pair header; send a single .nii")
        if len(head) >= 540 and struct.unpack(endian + "i", head[:4])[0] == 540:
            if head[4:8] == b"n+2\0":
                return nib.Nifti2Image
    shown = head[:8].hex(" ") if head else "nothing (empty file)"
    raise InvalidVolume(
        f"{name} is not a NIfTI file: it starts with {shown}, not a NIfTI-1/NIfTI-2 header"
    )


def _check_header(header: nib.Nifti1Header, name: str) -> int:
    """Dimensions and data type a CT volume can have; returns the expected file size."""
    shape = tuple(int(v) for v in header.get_data_shape())
    dims = "×".join(map(str, shape))
    if len(shape) < 3:
        raise InvalidVolume(f"{name} is a {len(shape)}D image ({dims}); a CT volume needs 3D")
    if len(shape) == 4 and shape[3] != 1:
        raise InvalidVolume(
            f"{name} is 4D ({dims}) with {shape[3]} volumes along the 4th axis; "
            "only 3D volumes (or 4D with a single volume) can be ingested"
        )
    if len(shape) > 4:
        raise InvalidVolume(f"{name} is a {len(shape)}D image ({dims}); a CT volume needs 3D")
    if min(shape) < 1 or int(np.prod(shape, dtype=np.int64)) > MAX_VOXELS:
        raise InvalidVolume(f"{name} has an unusable size {dims}")
    dtype = header.get_data_dtype()
    if dtype.kind not in "iuf" or dtype.fields is not None:
        raise InvalidVolume(f"{name} stores {dtype} voxels; expected integer or float intensities")
    return int(header.get_data_offset()) + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize


def _read_header(f: io.BufferedIOBase, name: str) -> tuple[type[nib.Nifti1Image], bytes, int]:
    head = f.read(540)
    klass = _header_class(head, name)
    size = 348 if klass is nib.Nifti1Image else 540
    try:
        header = klass.header_class.from_fileobj(io.BytesIO(head[:size] + b"\0" * 4))
    except Exception as exc:  # nibabel raises several types for a bad header
        raise InvalidVolume(f"{name}: unreadable NIfTI header ({exc})") from exc
    return klass, head, _check_header(header, name)


def _gunzip(src: Path, dst: Path, name: str, max_bytes: int | None) -> type[nib.Nifti1Image]:
    """Decompress the whole stream (checking CRC and length); errors say what failed where.

    The header's data size is checked against `max_bytes` before a byte is written, and the
    stream may not run past it either (a 1 MB .nii.gz must not become a 1 GB scratch file).
    """
    with open(src, "rb") as raw:
        compressed = src.stat().st_size
        try:
            with gzip.GzipFile(fileobj=raw) as gz, open(dst, "wb") as out:
                klass, head, expected = _read_header(gz, name)
                _check_expansion(expected, max_bytes, name, compressed)
                _check_free_space(dst.parent, expected, name)
                out.write(head)
                written = len(head)
                cap = expected + 1024**2  # room for trailing bytes some writers add
                while chunk := gz.read(1024**2):
                    written += out.write(chunk)
                    if written > cap:  # stopped at once, before the scratch file grows more
                        raise InvalidVolume(f"{name} decompresses to more than its header says")
            if written < expected:
                raise InvalidVolume(
                    f"{name} is truncated: the header needs {expected:,} bytes of NIfTI data, "
                    f"the gzip stream holds {written:,}"
                )
        except EOFError as exc:
            raise InvalidVolume(
                f"{name}: gzip stream truncated, the compressed data ends at byte {compressed:,} "
                "before the end-of-stream marker (the file was cut short; copy it again)"
            ) from exc
        except gzip.BadGzipFile as exc:
            if "CRC" in str(exc) or "length" in str(exc):
                what = "gzip checksum mismatch, the decompressed data is corrupt"
            elif raw.tell() <= 16:
                what = "not a gzip file although the name ends in .gz"
            else:
                what = f"corrupt gzip data near compressed byte {raw.tell():,}"
            raise InvalidVolume(f"{name}: {what} ({exc})") from exc
        except zlib.error as exc:
            raise InvalidVolume(
                f"{name}: corrupt gzip data near compressed byte {raw.tell():,} of "
                f"{compressed:,} ({exc})"
            ) from exc
    return klass


def _check_expansion(expected: int, max_bytes: int | None, name: str, compressed: int) -> None:
    if max_bytes is not None and expected > max_bytes:
        raise PayloadTooLarge(
            f"{name} ({compressed:,} bytes) decompresses to {expected:,} bytes, more than the "
            f"decompressed-size limit of {max_bytes / 1024**2:,.0f} MiB "
            "(MEDSYNTH_MAX_DECOMPRESSED_BYTES)"
        )


def _check_free_space(folder: Path, needed: int, name: str) -> None:
    free = shutil.disk_usage(folder).free
    if free < needed + 64 * 1024**2:
        raise InsufficientStorage(
            f"not enough disk space to unpack {name}: needs {needed / 1e6:,.0f} MB, "
            f"{free / 1e6:,.0f} MB free"
        )


@contextmanager
def open_nifti(
    path: Path, scratch_dir: Path, name: str | None = None, max_bytes: int | None = None
) -> Iterator[NiftiSource]:
    """Validate and open `path` (.nii or .nii.gz); a scratch copy is removed on exit.

    `max_bytes` bounds the decompressed image (header + voxels), checked before unpacking.
    """
    name = name or path.name
    if nifti_stem(name) is None:
        raise InvalidVolume(f"{name}: only .nii and .nii.gz files are accepted")
    scratch: Path | None = None
    try:
        if name.lower().endswith(".gz"):
            fd, tmp = tempfile.mkstemp(suffix=".nii", dir=scratch_dir)
            os.close(fd)
            scratch = Path(tmp)
            klass = _gunzip(path, scratch, name, max_bytes)
            data_path = scratch
        else:
            with open(path, "rb") as f:
                klass, _, expected = _read_header(f, name)
            _check_expansion(expected, max_bytes, name, path.stat().st_size)
            data_path = path
            if path.stat().st_size < expected:
                raise InvalidVolume(
                    f"{name} is truncated: the header needs {expected:,} bytes, "
                    f"the file has {path.stat().st_size:,}"
                )
        yield _source(klass, data_path, name)
    finally:
        if scratch is not None:
            scratch.unlink(missing_ok=True)


def _source(klass: type[nib.Nifti1Image], data_path: Path, name: str) -> NiftiSource:
    try:
        img = klass.from_filename(str(data_path), mmap="r")
        raw = img.dataobj.get_unscaled()
    except (ValueError, OSError, EOFError, ImageFileError) as exc:
        raise InvalidVolume(f"{name}: cannot read the image data ({exc})") from exc
    if raw.ndim == 4:
        raw = raw[..., 0]
    slope, inter = float(img.dataobj.slope), float(img.dataobj.inter)
    return source_from_array(name, raw, np.asarray(img.affine, dtype=np.float64), slope, inter)


def source_from_array(
    name: str, raw: np.ndarray, affine: np.ndarray, slope: float = 1.0, inter: float = 0.0
) -> NiftiSource:
    """A source for any 3D array with a voxel→RAS affine (NIfTI data, or a DICOM series)."""
    if not np.all(np.isfinite(affine)) or abs(np.linalg.det(affine[:3, :3])) < 1e-9:
        raise InvalidVolume(f"{name} has an unusable affine (singular or not finite)")
    ornt = io_orientation(affine)
    ras_affine = affine @ inv_ornt_aff(ornt, raw.shape)
    ras_shape = tuple(int(raw.shape[int(np.flatnonzero(ornt[:, 0] == i)[0])]) for i in range(3))
    return NiftiSource(
        name=name, raw=raw, slope=slope, inter=inter, ornt=ornt, shape=ras_shape, affine=ras_affine
    )


def check_same_grid(volume: NiftiSource, mask: NiftiSource) -> None:
    """The mask must cover the volume voxel for voxel (shape and affine within 1e-3)."""
    if mask.shape != volume.shape or not np.allclose(mask.affine, volume.affine, rtol=0, atol=1e-3):

        def show(src: NiftiSource) -> str:
            rows = "; ".join(" ".join(f"{v:.3f}" for v in row) for row in src.affine[:3])
            return f"shape {list(src.shape)}, affine [{rows}]"

        raise InvalidInput(
            f"mask {mask.name} does not match volume {volume.name}: the mask has "
            f"{show(mask)} but the volume has {show(volume)} (both in RAS order)"
        )


def write_fortran_npy(path: Path, dtype: np.dtype, shape: tuple, slabs: Iterator) -> None:
    """Stream z-slabs into a Fortran-order .npy, so each axial slice is contiguous on disk."""
    dtype = np.dtype(dtype)
    header = {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": True, "shape": shape}
    with open(path, "wb") as f:
        np.lib.format.write_array_header_1_0(f, header)
        for slab in slabs:
            f.write(np.asfortranarray(slab, dtype=dtype).T.data)
        f.flush()
        os.fsync(f.fileno())


@dataclass(frozen=True)
class LoadedVolume:
    array: np.ndarray  # [x, y, z] RAS
    affine: np.ndarray
    spacing: tuple[float, float, float]


def load_volume(path: Path, mask: bool = False) -> LoadedVolume:
    """Read a whole image into memory as int16 HU (or uint8 labels with mask=True), RAS."""
    with tempfile.TemporaryDirectory() as tmp, open_nifti(path, Path(tmp)) as src:
        out = np.empty(src.shape, np.uint8 if mask else np.int16, order="F")
        for k0, slab in src.label_slabs() if mask else src.hu_slabs():
            out[:, :, k0 : k0 + slab.shape[2]] = slab
        return LoadedVolume(out, src.affine, src.spacing)
