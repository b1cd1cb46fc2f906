"""DICOM CT series written with pydicom for the tests: no downloaded data, known identifiers."""

from __future__ import annotations

import random
import zipfile
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

PATIENT_NAME = "Zyxwvutsr^Qponmlkj"
PATIENT_ID = "PID-8675309-XQZ"
ACCESSION = "ACC-99531-KLMN"
INSTITUTION = "Fictional Ravenholm Hospital"
BIRTH_DATE = "19370215"
ENHANCED_CT = "1.2.840.10008.5.1.4.1.1.2.1"


def ct_volume(cols: int = 40, rows: int = 32, n: int = 6, seed: int = 0) -> np.ndarray:
    """HU as [rows, cols, n]: a body disc with a brighter block and noise (not symmetric)."""
    rng = np.random.default_rng(seed)
    r, c = np.mgrid[:rows, :cols]
    body = ((r - rows / 2) / (rows * 0.45)) ** 2 + ((c - cols / 2) / (cols * 0.45)) ** 2 < 1
    hu = np.where(body, 40, -1000)[..., None].repeat(n, axis=2).astype(np.int16)
    hu[2:8, 3:12, :] = 300 + np.arange(n, dtype=np.int16)  # a block off-centre, rising with z
    return (hu + rng.integers(-20, 20, hu.shape)).astype(np.int16)


def _base(series_uid: str, study_uid: str, modality: str, **extra) -> Dataset:
    ds = Dataset()
    ds.PatientName = PATIENT_NAME
    ds.PatientID = PATIENT_ID
    ds.PatientBirthDate = BIRTH_DATE
    ds.AccessionNumber = ACCESSION
    ds.InstitutionName = INSTITUTION
    ds.ReferringPhysicianName = "Gordonfreeman^Alyxvance"
    ds.PatientSex, ds.StudyID, ds.SeriesNumber = "O", "S1", 1
    ds.StudyDate, ds.StudyTime = "20240102", "101500"
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = series_uid
    ds.FrameOfReferenceUID = extra.pop("frame_uid", "1.2.826.0.1.3680043.8.498.1")
    ds.Modality = modality
    ds.KVP = "120"
    ds.ConvolutionKernel = "B30f"
    ds.SeriesDescription = extra.pop("description", f"ABD PORTAL VENOUS {PATIENT_ID}")
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 1
    for k, v in extra.items():
        setattr(ds, k, v)
    return ds


def _save(ds: Dataset, path: Path, sop_class: str, syntax) -> None:
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = ds.get("SOPInstanceUID") or generate_uid()
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta = meta
    if syntax != ExplicitVRLittleEndian:
        ds.compress(syntax)
    ds.save_as(path, enforce_file_format=True)


def write_series(
    folder: Path,
    hu: np.ndarray,
    *,
    spacing: tuple[float, float, float] = (0.75, 0.8, 2.5),  # (column, row, slice) mm
    origin: tuple[float, float, float] = (-15.0, -12.0, -40.0),  # LPS of the first slice
    slope: float = 1.0,
    intercept: float = -1024.0,
    series_uid: str | None = None,
    study_uid: str | None = None,
    modality: str = "CT",
    syntax=ExplicitVRLittleEndian,
    skip: tuple[int, ...] = (),
    orientation: tuple[float, ...] = (1, 0, 0, 0, 1, 0),
    seed: int = 0,
    **extra,
) -> list[Path]:
    """One file per slice (shuffled numeric names), stored = (HU - intercept) / slope."""
    folder.mkdir(parents=True, exist_ok=True)
    series_uid, study_uid = series_uid or generate_uid(), study_uid or generate_uid()
    n = hu.shape[2]
    names = list(range(n))
    random.Random(seed).shuffle(names)
    normal = np.cross(orientation[:3], orientation[3:])
    paths = []
    for k in range(n):
        if k in skip:
            continue
        ds = _base(series_uid, study_uid, modality, **extra)
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        ds.InstanceNumber = n - k  # deliberately the reverse of the true order
        ds.ImagePositionPatient = [float(v) for v in np.asarray(origin) + k * spacing[2] * normal]
        ds.ImageOrientationPatient = [float(v) for v in orientation]
        ds.PixelSpacing = [spacing[1], spacing[0]]
        ds.SliceThickness = spacing[2]
        ds.Rows, ds.Columns = hu.shape[0], hu.shape[1]
        ds.RescaleSlope, ds.RescaleIntercept = slope, intercept
        stored = np.rint((hu[:, :, k].astype(np.float64) - intercept) / slope).astype(np.int16)
        ds.PixelData = stored.tobytes()
        path = folder / f"IM{names[k]:04d}"
        _save(ds, path, CTImageStorage, syntax)
        paths.append(path)
    return paths


def write_localizer(folder: Path, series_uid: str | None = None) -> Path:
    ds = _base(series_uid or generate_uid(), generate_uid(), "CT")
    ds.ImageType = ["ORIGINAL", "PRIMARY", "LOCALIZER"]
    ds.ImagePositionPatient, ds.ImageOrientationPatient = [0, 0, 0], [1, 0, 0, 0, 0, -1]
    ds.PixelSpacing, ds.Rows, ds.Columns = [1, 1], 8, 8
    ds.PixelData = np.zeros((8, 8), np.int16).tobytes()
    _save(ds, folder / "SCOUT1", CTImageStorage, ExplicitVRLittleEndian)
    return folder / "SCOUT1"


def write_enhanced(path: Path, hu: np.ndarray, spacing=(0.75, 0.8, 2.5), origin=(-15, -12, -40),
                   slopes: tuple[float, float] = (1.0, -1024.0)) -> Path:  # fmt: skip
    """One enhanced (multi-frame) CT file holding the whole series, frames in reverse order."""
    ds = _base(generate_uid(), generate_uid(), "CT")
    ds.ImageType = ["ORIGINAL", "PRIMARY", "VOLUME", "NONE"]
    n = hu.shape[2]
    ds.NumberOfFrames, ds.Rows, ds.Columns = n, hu.shape[0], hu.shape[1]
    shared = Dataset()
    orient, measures = Dataset(), Dataset()
    orient.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    measures.PixelSpacing, measures.SliceThickness = [spacing[1], spacing[0]], spacing[2]
    shared.PlaneOrientationSequence, shared.PixelMeasuresSequence = [orient], [measures]
    ds.SharedFunctionalGroupsSequence = Sequence([shared])
    frames, order = [], list(reversed(range(n)))
    for k in order:
        item, pos, val = Dataset(), Dataset(), Dataset()
        pos.ImagePositionPatient = [origin[0], origin[1], origin[2] + k * spacing[2]]
        val.RescaleSlope, val.RescaleIntercept = slopes
        item.PlanePositionSequence, item.PixelValueTransformationSequence = [pos], [val]
        frames.append(item)
    ds.PerFrameFunctionalGroupsSequence = Sequence(frames)
    stored = [(hu[:, :, k] - slopes[1]) / slopes[0] for k in order]
    ds.PixelData = np.rint(np.stack(stored)).astype(np.int16).tobytes()
    _save(ds, path, ENHANCED_CT, ExplicitVRLittleEndian)
    return path


def zip_folder(folder: Path, out: Path, extra: dict[str, bytes] | None = None) -> Path:
    """Zip every file under `folder` (relative names) plus `extra` members."""
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zf:
        for p in sorted(folder.rglob("*")):
            if p.is_file():
                zf.write(p, str(p.relative_to(folder)))
        for name, data in (extra or {}).items():
            zf.writestr(name, data)
    return out


def expected_ras(hu: np.ndarray) -> np.ndarray:
    """The canonical RAS array [x, y, z] of an LPS-axial series: x and y reversed."""
    return np.transpose(hu, (1, 0, 2))[::-1, ::-1, :]


def write_seg(path: Path, ct_paths: list[Path], liver: np.ndarray, tumour: np.ndarray) -> Path:
    """A binary DICOM SEG (highdicom) with segments 'Liver' and 'Tumor' on the CT slices.

    `liver` and `tumour` are [rows, cols, n] like the HU array given to write_series.
    """
    import highdicom as hd
    import pydicom
    from pydicom.sr.codedict import codes

    sources = sorted(
        (pydicom.dcmread(p) for p in ct_paths), key=lambda d: d.ImagePositionPatient[2]
    )

    def segment(number: int, label: str, code) -> hd.seg.SegmentDescription:
        return hd.seg.SegmentDescription(
            segment_number=number,
            segment_label=label,
            segmented_property_category=codes.SCT.Organ,
            segmented_property_type=code,
            algorithm_type=hd.seg.SegmentAlgorithmTypeValues.MANUAL,
        )

    pixels = np.stack([np.moveaxis(liver, 2, 0), np.moveaxis(tumour, 2, 0)], axis=-1) != 0
    seg = hd.seg.Segmentation(
        source_images=sources,
        pixel_array=pixels.astype(np.uint8),
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=[
            segment(1, "Liver", codes.SCT.Liver),
            segment(2, "Tumor", codes.SCT.Neoplasm),
        ],
        series_instance_uid=generate_uid(),
        series_number=2,
        sop_instance_uid=generate_uid(),
        instance_number=1,
        manufacturer="MedSynth tests",
        manufacturer_model_name="dicom_files.py",
        software_versions="1",
        device_serial_number="1",
    )
    seg.save_as(path)
    return path
