"""A DICOM series as a volume: slice order, spacing and affine from the headers, then pixels.

Slices are ordered by their position along the slice normal (ImagePositionPatient · (row ×
column direction)), never by file name or InstanceNumber. Spacing comes from the positions,
not from SliceThickness. The affine maps (column, row, slice) indices to LPS millimetres and is
turned into RAS (negate x and y), so the result feeds the same reorientation as a NIfTI file.

Gantry tilt (positions that step off the normal) is refused, not resampled: resampling would
interpolate HU values into a training set without anyone seeing it, and tilted abdominal CT
is rare; the message gives the angle so the series can be reconstructed untilted.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
from pydicom.pixels import iter_pixels

from app.errors import InvalidVolume
from app.imaging.dicom_read import Frame, Series, _frame_name
from app.imaging.nifti import NiftiSource, source_from_array

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])
MAX_GAP = 1.5  # × the median spacing: more is a missing slice
UNEVEN = 0.1  # relative deviation from the median spacing that is still one grid
TILT_DEG = 0.5
AXIAL_DEG = 45.0  # the normal within this of the patient's z axis: axial (oblique allowed)


@dataclass
class Plan:
    """A validated series: frames in slice order and the voxel→RAS affine of (col, row, k)."""

    frames: list[Frame]
    affine: np.ndarray
    shape: tuple[int, int, int]  # (columns, rows, slices)


def plan_series(series: Series) -> Plan:
    """Order and check the frames; InvalidVolume names the file and the reason."""
    if series.refusal:
        raise InvalidVolume(series.refusal)
    frames = series.frames
    if len(frames) < 2:
        what = _frame_name(frames[0]) if frames else "the series"
        raise InvalidVolume(f"{what}: a single-slice series, not a volume")
    first = frames[0]
    for f in frames[1:]:
        if not np.allclose(f.orientation, first.orientation, atol=1e-4):
            raise InvalidVolume(f"{_frame_name(f)}: orientation differs from {first.file}")
        if not np.allclose(f.pixel_spacing, first.pixel_spacing, atol=1e-4):
            raise InvalidVolume(
                f"{_frame_name(f)}: pixel size {list(f.pixel_spacing)} differs from "
                f"{list(first.pixel_spacing)} in {first.file}"
            )
        if f.size != first.size:
            raise InvalidVolume(f"{_frame_name(f)}: image size {f.size} differs from {first.size}")
    row, col = first.orientation[:3], first.orientation[3:]
    normal = np.cross(row, col)
    if np.linalg.norm(normal) < 0.9 or abs(float(row @ col)) > 1e-3:
        raise InvalidVolume(f"{first.file}: ImageOrientationPatient is not two unit axes")
    normal /= np.linalg.norm(normal)
    tilt_from_z = np.degrees(np.arccos(min(1.0, abs(float(normal[2])))))
    if tilt_from_z > AXIAL_DEG:
        view = "sagittal" if abs(normal[0]) > abs(normal[1]) else "coronal"
        raise InvalidVolume(f"{first.file}: a {view} series, not axial (slice normal {normal})")
    order = sorted(frames, key=lambda f: float(f.position @ normal))
    step = _check_positions(order, normal)
    affine = np.eye(4)
    affine[:3, 0] = row * first.pixel_spacing[1]
    affine[:3, 1] = col * first.pixel_spacing[0]
    affine[:3, 2] = step
    affine[:3, 3] = order[0].position
    return Plan(order, LPS_TO_RAS @ affine, (first.size[1], first.size[0], len(order)))


def _check_positions(order: list[Frame], normal: np.ndarray) -> np.ndarray:
    """The mean step vector between slices, after the gap, duplicate and tilt checks."""
    s = np.array([float(f.position @ normal) for f in order])
    d = np.diff(s)
    for k in np.flatnonzero(d < 1e-3):
        raise InvalidVolume(
            f"{_frame_name(order[k + 1])} and {_frame_name(order[k])}: duplicate slice position "
            f"{s[k]:.3f} mm along the normal"
        )
    median = float(np.median(d))
    for k in np.flatnonzero(d > MAX_GAP * median):
        raise InvalidVolume(
            f"missing slice between {_frame_name(order[k])} ({s[k]:.2f} mm) and "
            f"{_frame_name(order[k + 1])} ({s[k + 1]:.2f} mm): a gap of {d[k]:.2f} mm, "
            f"more than {MAX_GAP}× the median spacing {median:.2f} mm"
        )
    if np.max(np.abs(d - median)) > UNEVEN * median:
        k = int(np.argmax(np.abs(d - median)))
        raise InvalidVolume(
            f"uneven slice spacing at {_frame_name(order[k + 1])}: {d[k]:.2f} mm against a "
            f"median of {median:.2f} mm (one volume needs one spacing)"
        )
    step = (order[-1].position - order[0].position) / (len(order) - 1)
    along = float(step @ normal)
    off = float(np.linalg.norm(step - along * normal))
    angle = float(np.degrees(np.arctan2(off, along)))
    if angle > TILT_DEG:
        raise InvalidVolume(
            f"{order[0].file}: gantry tilt of {angle:.1f}° (slices step off the slice normal); "
            "tilted series are refused, not resampled: reconstruct it without tilt"
        )
    return step


def read_volume(
    plan: Plan, scratch: Path, name: str, convert: Callable[[np.ndarray, Frame], np.ndarray]
) -> NiftiSource:
    """Decode every frame into a scratch int16 memmap (col, row, k); bounded memory."""
    raw = np.lib.format.open_memmap(scratch, mode="w+", dtype=np.int16, shape=plan.shape,
                                    fortran_order=True)  # fmt: skip
    slot = {(str(f.path), f.frame): k for k, f in enumerate(plan.frames)}
    done = 0
    for path in dict.fromkeys(str(f.path) for f in plan.frames):
        for frame, pixels in _decode(path, plan):
            k = slot.get((path, frame))
            if k is None:
                continue
            f = plan.frames[k]
            if pixels.shape != (f.size[0], f.size[1]):
                raise InvalidVolume(f"{_frame_name(f)}: pixel data is not {f.size[0]}×{f.size[1]}")
            raw[:, :, k] = convert(pixels, f).T
            done += 1
    if done != len(plan.frames):
        raise InvalidVolume(f"{name}: {len(plan.frames) - done} frames had no pixel data")
    raw.flush()
    return source_from_array(name, raw, plan.affine)


def _decode(path: str, plan: Plan):
    """(frame index or None, 2D stored values) for one file; decoder errors name the file."""
    shown = next(f.file for f in plan.frames if str(f.path) == path)
    try:
        ds = pydicom.dcmread(path)
        if int(ds.get("SamplesPerPixel", 1)) != 1:
            raise InvalidVolume(f"{shown}: colour pixel data, not a CT image")
        if (
            int(ds.get("NumberOfFrames", 1) or 1) == 1
            and "PerFrameFunctionalGroupsSequence" not in ds
        ):
            yield None, ds.pixel_array
            return
        yield from enumerate(iter_pixels(ds))
    except InvalidVolume:
        raise
    except Exception as exc:  # decoders raise many types (missing plugin, corrupt stream...)
        raise InvalidVolume(
            f"{shown}: unreadable pixel data ({type(exc).__name__}: {exc})"
        ) from exc


def to_hu(pixels: np.ndarray, frame: Frame) -> np.ndarray:
    """Stored values × RescaleSlope + RescaleIntercept of this frame, as int16 HU."""
    if frame.slope == 1 and frame.intercept == int(frame.intercept) and pixels.dtype.kind in "iu":
        hu = pixels.astype(np.int32) + int(frame.intercept)
    else:
        hu = np.rint(pixels.astype(np.float32) * np.float32(frame.slope) + frame.intercept)
    return np.clip(hu, -32768, 32767).astype(np.int16)


def to_binary(pixels: np.ndarray, frame: Frame) -> np.ndarray:
    """A structure mask: stored value 0 is outside, anything else inside (before rescale)."""
    return (pixels != 0).astype(np.int16)
