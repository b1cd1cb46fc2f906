"""Reading DICOM headers with pydicom and grouping them into series of 2D frames.

A classic CT file is one frame; an enhanced (multi-frame) CT file is many, each with its own
position and rescale from the functional groups. Pixels are not read here (see dicom_geometry):
the header pass uses `defer_size`, so hundreds of files cost little memory.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pydicom
import pydicom.config
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError

from app.imaging.dicom_deid import identifiers

CT = "1.2.840.10008.5.1.4.1.1.2"
ENHANCED_CT = "1.2.840.10008.5.1.4.1.1.2.1"
SEG = "1.2.840.10008.5.1.4.1.1.66.4"
DICOMDIR = "1.2.840.10008.1.3.10"
# pydicom's reading validation warns with the offending value (a malformed PatientName would
# be echoed into the server log); values are checked where they are used instead.
pydicom.config.settings.reading_validation_mode = pydicom.config.IGNORE


@dataclass
class Frame:
    """One 2D image: a classic file, or frame `frame` (0-based) of an enhanced file."""

    file: str  # the name shown in messages (zip member or path, scrubbed later)
    path: Path
    frame: int | None
    position: np.ndarray  # ImagePositionPatient, LPS mm
    orientation: np.ndarray  # ImageOrientationPatient (row direction, column direction)
    pixel_spacing: tuple[float, float]  # (between rows, between columns) mm
    size: tuple[int, int]  # (rows, columns)
    slope: float
    intercept: float
    localizer: bool
    sop_uid: str = ""  # SOPInstanceUID (what a DICOM SEG refers to)


@dataclass
class Series:
    uid: str
    header: Dataset  # the first file's header (for de-identified facts only)
    frames: list[Frame] = field(default_factory=list)
    enhanced: bool = False
    refusal: str | None = None  # set when the whole series is unusable


@dataclass
class Scan:
    series: dict[str, Series] = field(default_factory=dict)
    segs: list[tuple[str, Path]] = field(default_factory=list)  # DICOM SEG objects
    skipped: list[dict] = field(default_factory=list)  # {"file", "reason"}
    secrets: set[str] = field(default_factory=set)  # identifying values seen, for scrubbing


def scan(files: list[tuple[str, Path]], ct_only: bool = True) -> Scan:
    """Headers of every file, grouped by SeriesInstanceUID; what cannot be used is skipped."""
    out = Scan()
    for shown, path in files:
        try:
            ds = pydicom.dcmread(path, defer_size="4 KB")
        except (InvalidDicomError, OSError, ValueError, EOFError, KeyError) as exc:
            out.skipped.append({"file": shown, "reason": f"not a readable DICOM file ({exc})"})
            continue
        out.secrets |= identifiers(ds)
        sop = str(ds.get("SOPClassUID", "") or getattr(ds.file_meta, "MediaStorageSOPClassUID", ""))
        if sop == DICOMDIR or "DirectoryRecordSequence" in ds:
            out.skipped.append({"file": shown, "reason": "a DICOMDIR index, not an image"})
        elif sop == SEG:
            out.segs.append((shown, path))
        elif "PixelData" not in ds and sop in (CT, ENHANCED_CT):
            series = out.series.setdefault(str(ds.get("SeriesInstanceUID", "")), Series("", ds))
            series.refusal = (
                series.refusal or f"{shown}: unreadable pixel data (missing or cut off)"
            )
        elif "PixelData" not in ds:
            out.skipped.append({"file": shown, "reason": "no pixel data (not an image)"})
        else:
            _add(out, shown, path, ds, ct_only)
    return out


def _add(out: Scan, shown: str, path: Path, ds: Dataset, ct_only: bool) -> None:
    uid = str(ds.get("SeriesInstanceUID", "") or f"no-series-uid:{path.parent}")
    series = out.series.setdefault(uid, Series(uid=uid, header=ds))
    modality = str(ds.get("Modality", "") or "?")
    if ct_only and modality != "CT":
        series.refusal = series.refusal or f"{shown}: modality {modality}, not CT"
        return
    try:
        frames = (
            _enhanced_frames(shown, path, ds) if _is_enhanced(ds) else [_classic(shown, path, ds)]
        )
    except (AttributeError, KeyError, IndexError, TypeError, ValueError) as exc:
        series.refusal = series.refusal or f"{shown}: incomplete geometry in the header ({exc})"
        return
    series.enhanced |= _is_enhanced(ds)
    for f in frames:
        if f.localizer:
            out.skipped.append({"file": _frame_name(f), "reason": "localizer/scout image"})
        else:
            series.frames.append(f)


def _is_enhanced(ds: Dataset) -> bool:
    return str(ds.get("SOPClassUID", "")) == ENHANCED_CT or "PerFrameFunctionalGroupsSequence" in ds


def _frame_name(f: Frame) -> str:
    return f.file if f.frame is None else f"{f.file} frame {f.frame + 1}"


def _classic(shown: str, path: Path, ds: Dataset) -> Frame:
    image_type = [str(v).upper() for v in (ds.get("ImageType") or [])]
    localizer = "LOCALIZER" in image_type or "SCOUT" in image_type or "TOPOGRAM" in image_type
    if localizer and "ImagePositionPatient" not in ds:
        zero = np.zeros(3)
        return Frame(shown, path, None, zero, np.zeros(6), (1, 1), (0, 0), 1, 0, True)
    return Frame(
        file=shown,
        path=path,
        frame=None,
        position=np.array([float(v) for v in ds.ImagePositionPatient], np.float64),
        orientation=np.array([float(v) for v in ds.ImageOrientationPatient], np.float64),
        pixel_spacing=tuple(float(v) for v in ds.PixelSpacing),
        size=(int(ds.Rows), int(ds.Columns)),
        slope=float(ds.get("RescaleSlope", 1) or 1),
        intercept=float(ds.get("RescaleIntercept", 0) or 0),
        localizer=localizer,
        sop_uid=str(ds.get("SOPInstanceUID", "")),
    )


def _group(ds: Dataset, per_frame: Dataset | None, name: str) -> Dataset | None:
    """A functional-group macro for one frame: the per-frame item, else the shared one."""
    for holder in (per_frame, *(ds.get("SharedFunctionalGroupsSequence") or [])):
        if holder is not None and name in holder and len(holder[name].value):
            return holder[name].value[0]
    return None


def _enhanced_frames(shown: str, path: Path, ds: Dataset) -> list[Frame]:
    per = ds.get("PerFrameFunctionalGroupsSequence") or []
    frames = []
    for i in range(int(ds.get("NumberOfFrames", 1) or 1)):
        item = per[i] if i < len(per) else None
        pos = _group(ds, item, "PlanePositionSequence")
        ori = _group(ds, item, "PlaneOrientationSequence")
        pix = _group(ds, item, "PixelMeasuresSequence")
        val = _group(ds, item, "PixelValueTransformationSequence")
        kind = _group(ds, item, "CTImageFrameTypeSequence")
        frame_type = [str(v).upper() for v in ((kind.get("FrameType") if kind else None) or [])]
        frames.append(
            Frame(
                file=shown,
                path=path,
                frame=i,
                position=np.array([float(v) for v in pos.ImagePositionPatient], np.float64),
                orientation=np.array([float(v) for v in ori.ImageOrientationPatient], np.float64),
                pixel_spacing=tuple(float(v) for v in pix.PixelSpacing),
                size=(int(ds.Rows), int(ds.Columns)),
                slope=float(val.get("RescaleSlope", 1)) if val else 1.0,
                intercept=float(val.get("RescaleIntercept", 0)) if val else 0.0,
                localizer="LOCALIZER" in frame_type,
            )
        )
    return frames
