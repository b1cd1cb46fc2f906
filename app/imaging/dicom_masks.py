"""Masks given as DICOM: one series per structure (0 / non-zero), or a DICOM SEG object.

Public liver datasets (3D-IRCADb) ship one DICOM folder per structure; the folder name (else
the SeriesDescription) says which: liver → label 1, tumour/lesion → label 2 (tumour wins where
both are set); other structures are skipped with a reason. A SEG is read with highdicom by the
SOP Instance UIDs of the CT slices it refers to, so it lands on the CT's grid exactly.
"""

from __future__ import annotations

import re
from pathlib import Path, PurePosixPath

import highdicom as hd
import numpy as np

from app.errors import InvalidInput
from app.imaging.dicom_geometry import Plan, plan_series, read_volume, to_binary
from app.imaging.dicom_read import Scan, Series
from app.imaging.nifti import NiftiSource, check_same_grid, source_from_array

TUMOUR = re.compile(r"tumou?r|lesion|metasta|hcc|carcinoma", re.IGNORECASE)
LIVER = re.compile(r"liver|hepa", re.IGNORECASE)


def structure_label(name: str) -> int | None:
    """2 for a tumour structure, 1 for the liver, None for anything else ('livertumor' is 2)."""
    if TUMOUR.search(name):
        return 2
    return 1 if LIVER.search(name) else None


def _structure_name(series: Series) -> str:
    folder = (
        PurePosixPath(series.frames[0].file.replace("\\", "/")).parent.name if series.frames else ""
    )
    return folder or str(series.header.get("SeriesDescription", "") or "")


STRUCTURES = {"liver": 1, "tumour": 2}  # what the upload form asks for one unnamed series


class MaskStructureNeeded(InvalidInput):
    """One mask series whose name says no structure: the user says which it is."""


def _label_of(series: Series, count: int, structure: str | None) -> tuple[str, int | None]:
    """The series' name and label; `structure` (liver | tumour) names a lone unnamed series."""
    name = _structure_name(series)
    label = structure_label(name)
    if label is None and count == 1:
        if structure in STRUCTURES:
            return name, STRUCTURES[structure]
        raise MaskStructureNeeded(
            f"the mask zip holds one series, in {name or 'a folder'!r}, whose name says neither "
            "liver nor tumour: choose which structure it is (mask_structure: liver or tumour) "
            "and upload again"
        )
    return name, label


def combine_structures(
    scan: Scan, volume: NiftiSource, scratch: Path, skipped: list[dict],
    structure: str | None = None,
) -> NiftiSource:  # fmt: skip
    """Labels 0/1/2 on the volume's RAS grid from per-structure series."""
    if structure not in (None, "", *STRUCTURES):
        raise InvalidInput(f"mask_structure must be liver or tumour, not {structure!r}")
    labels = np.zeros(volume.shape, np.uint8, order="F")
    used = 0
    for n, series in enumerate(scan.series.values()):
        name, label = _label_of(series, len(scan.series), structure)
        if label is None:
            skipped.append({"file": name or series.uid, "reason": "not a liver or tumour mask"})
            continue
        src = read_volume(plan_series(series), scratch / f"structure-{n}.npy", name, to_binary)
        check_same_grid(volume, src)
        for k0, slab in src.slabs():
            view = labels[:, :, k0 : k0 + slab.shape[2]]
            view[slab != 0] = np.maximum(view[slab != 0], label)
        used += 1
    if not used:
        raise InvalidInput("the mask upload holds no liver or tumour structure (folder names)")
    return source_from_array("mask", labels, volume.affine)


def seg_labels(path: Path, shown: str, plan: Plan) -> NiftiSource:
    """Labels 0/1/2 from a DICOM SEG whose segments are named liver and tumour."""
    try:
        seg = hd.seg.segread(path)
    except Exception as exc:  # highdicom/pydicom raise many types for a malformed object
        raise InvalidInput(f"{shown}: not a readable DICOM SEG ({exc})") from exc
    numbers: dict[int, int] = {}
    for item in seg.SegmentSequence:
        meaning = " ".join(
            [str(item.get("SegmentLabel", ""))]
            + [str(c.CodeMeaning) for c in item.get("SegmentedPropertyTypeCodeSequence", [])]
        )
        label = structure_label(meaning)
        if label is not None:
            numbers[int(item.SegmentNumber)] = label
    if not numbers:
        raise InvalidInput(f"{shown}: no segment is named liver or tumour")
    uids = [f.sop_uid for f in plan.frames]
    try:
        pixels = seg.get_pixels_by_source_instance(
            uids, segment_numbers=sorted(numbers), assert_missing_frames_are_empty=True
        )
    except (ValueError, KeyError, IndexError) as exc:
        raise InvalidInput(f"{shown}: does not match the CT series ({exc})") from exc
    labels = np.zeros(plan.shape, np.uint8, order="F")
    for channel, number in enumerate(sorted(numbers)):
        inside = np.transpose(pixels[..., channel] != 0, (2, 1, 0))  # (k, row, col) → (col, row, k)
        labels[inside] = np.maximum(labels[inside], numbers[number])
    return source_from_array(shown, labels, plan.affine)


def mask_for(scan: Scan, volume: NiftiSource, plan: Plan | None, scratch: Path,
             skipped: list[dict], structure: str | None = None) -> NiftiSource:  # fmt: skip
    """The mask a DICOM mask upload describes, checked against the volume's grid."""
    if scan.segs:
        if len(scan.segs) > 1:
            raise InvalidInput(
                f"the mask upload holds {len(scan.segs)} DICOM SEG objects; send one"
            )
        if plan is None:
            raise InvalidInput("a DICOM SEG mask needs a DICOM CT series as the volume")
        mask = seg_labels(scan.segs[0][1], scan.segs[0][0], plan)
        check_same_grid(volume, mask)
        return mask
    if not scan.series:
        raise InvalidInput("the mask upload holds no DICOM images and no DICOM SEG")
    return combine_structures(scan, volume, scratch, skipped, structure)
