"""Which files make which volumes, before anything is read: LiTS volume-N / segmentation-N
pairs (the one in the same folder first), one --mask for exactly one volume, and DICOM
folders, files and zips recognised by their magic bytes (they go to ingest_dicom.py)."""

from __future__ import annotations

import re
from pathlib import Path

from app.errors import InvalidInput
from app.imaging.nifti import nifti_stem

LITS_NAME = re.compile(r"^(volume|segmentation)-(\d+)\.nii(\.gz)?$", re.IGNORECASE)


def is_dicom_file(path: Path) -> bool:
    with open(path, "rb") as f:
        return f.read(132)[128:] == b"DICM"


def _is_zip(path: Path) -> bool:
    with open(path, "rb") as f:
        return path.suffix.lower() == ".zip" or f.read(4) == b"PK\x03\x04"


def plan_ingest(paths: list[Path], mask: Path | None) -> list[tuple | dict]:
    """(volume, mask) NIfTI pairs and (source, mask, "dicom") in order; {"path", "error"}."""
    files: list[Path] = []
    plan: list = []
    for p in paths:
        if p.is_dir():
            found = [f for f in p.rglob("*") if f.is_file() and not f.is_symlink()]
            files += sorted((f for f in found if nifti_stem(f.name)), key=_natural)
            if any(is_dicom_file(f) for f in found if not nifti_stem(f.name)):
                plan.append((p, None, "dicom"))
        elif p.is_file() and (_is_zip(p) or is_dicom_file(p)):
            plan.append((p, None, "dicom"))
        elif p.is_file():
            files.append(p)
        else:
            plan.append({"path": str(p), "error": "no such file or folder"})
    masks = [f for f in files if _lits(f) and _lits(f)[0] == "segmentation"]
    volumes = [f for f in files if f not in masks]
    if mask is not None:
        dicom = [item for item in plan if isinstance(item, tuple)]
        if len(volumes) + len(dicom) != 1:
            raise InvalidInput(f"--mask needs exactly one volume, got {len(volumes) + len(dicom)}")
        if dicom:
            return [item if item not in dicom else (item[0], mask, "dicom") for item in plan]
        return plan + [(volumes[0], mask)]
    used: set[Path] = set()
    for v in volumes:
        m = _partner(v, masks)
        if m is not None:
            used.add(m)
        plan.append((v, m))
    for m in masks:
        if m not in used:
            plan.append({"path": str(m), "error": "segmentation without a matching volume-N"})
    return plan


def _lits(path: Path) -> tuple[str, int] | None:
    match = LITS_NAME.match(path.name)
    return (match.group(1).lower(), int(match.group(2))) if match else None


def _partner(volume: Path, masks: list[Path]) -> Path | None:
    """segmentation-N for volume-N: the one in the same folder first, else the only one."""
    key = _lits(volume)
    if key is None or key[0] != "volume":
        return None
    same = [m for m in masks if _lits(m)[1] == key[1]]
    near = [m for m in same if m.parent == volume.parent]
    if len(near) == 1:
        return near[0]
    return same[0] if len(same) == 1 else None


def _natural(path: Path) -> list:
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", str(path))]
