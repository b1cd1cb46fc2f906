"""Ingested volumes: lookup, archive/delete, the cached arrays (memory-mapped), display slices."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.errors import Conflict, NotFound
from app.imaging.render import axial_display, slice_png
from app.imaging.window import Window
from app.models import DatasetItem, DatasetVersion, User, Volume, utcnow
from app.services.curation import audit
from app.settings import Settings


def stored_path(settings: Settings, path: Path) -> str:
    """Paths under the data folder are stored relative to it, so the folder can move."""
    try:
        return str(path.resolve().relative_to(settings.data_dir.resolve()))
    except ValueError:
        return str(path.resolve())


def data_path(settings: Settings, stored: str) -> Path:
    return settings.data_dir / stored  # an absolute `stored` stays as it is


def list_volumes(session: Session, include_archived: bool = False) -> list[Volume]:
    """Volumes by id; archived ones only when asked (the audit and version pages)."""
    query = select(Volume).order_by(Volume.id)
    if not include_archived:
        query = query.where(Volume.archived_at.is_(None))
    return list(session.scalars(query))


def patient_key(volume: Volume) -> str:
    """The grouping key of patient-level splits: the salted patient hash when ingest stored
    one (DICOM), else the volume itself (one volume = one patient)."""
    for name in ("patient_hash", "patient_key"):
        value = getattr(volume, name, None)
        if value:
            return f"patient:{value}"
    return f"volume:{volume.id}"


def versions_using(session: Session, volume_id: int) -> list[int]:
    """Ids of the dataset versions that contain slices of this volume."""
    rows = session.scalars(
        select(DatasetItem.dataset_id).where(DatasetItem.volume_id == volume_id).distinct()
    )
    return sorted(rows)


def set_archived(session: Session, volume: Volume, user: User, archived: bool = True) -> Volume:
    """Hide a volume from lists and freezes (or show it again); its rows and files stay."""
    if archived == (volume.archived_at is not None):
        return volume
    volume.archived_at = utcnow() if archived else None
    action = "volume.archive" if archived else "volume.unarchive"
    audit.record(session, action, user, f"volume:{volume.id}", name=volume.name)
    session.commit()
    return volume


def delete_volume(session: Session, settings: Settings, volume: Volume, user: User) -> None:
    """Delete a volume's rows (slices, reviews by cascade) and files; 409 while a version
    uses it (its provenance must stay resolvable: archive it instead)."""
    used = versions_using(session, volume.id)
    if used:
        names = ", ".join(
            f"#{i} {n}"
            for i, n in session.execute(
                select(DatasetVersion.id, DatasetVersion.name).where(DatasetVersion.id.in_(used))
            )
        )
        raise Conflict(
            f"volume {volume.id} is used by dataset version(s) {names}; archive it instead"
        )
    files = [volume.source_path, volume.mask_source_path, volume.cache_path, volume.mask_cache_path]
    audit.record(session, "volume.delete", user, f"volume:{volume.id}", name=volume.name)
    session.delete(volume)
    try:
        session.commit()
    except BaseException:
        session.rollback()
        raise
    _open_npy.cache_clear()
    for stored in filter(None, files):
        _remove_own_file(settings, data_path(settings, stored))


def _remove_own_file(settings: Settings, path: Path) -> None:
    """Delete a file the app wrote under its data folder (never a user's original elsewhere),
    and its upload folder when that is left empty."""
    root = settings.data_dir.resolve()
    path = path.resolve()
    if not path.is_relative_to(root):
        return
    path.unlink(missing_ok=True)
    parent, uploads = path.parent, settings.uploads_dir.resolve()
    if parent != uploads and parent.is_relative_to(uploads):
        try:
            parent.rmdir()
        except OSError:
            pass  # not empty (the mask, or the demo folder)


def get_volume(session: Session, volume_id: int) -> Volume:
    volume = session.get(Volume, volume_id)
    if volume is None:
        raise NotFound(f"no volume with id {volume_id}")
    return volume


@lru_cache(maxsize=8)
def _open_npy(path: str) -> np.ndarray:
    """One read-only memory map per cache file; cache files never change once written."""
    return np.load(path, mmap_mode="r")


def volume_array(settings: Settings, volume: Volume) -> np.ndarray:
    """int16 HU, canonical RAS, [x, y, z] (Fortran order: each axial slice is contiguous)."""
    return _open_npy(str(data_path(settings, volume.cache_path)))


def mask_array(settings: Settings, volume: Volume) -> np.ndarray | None:
    """uint8 labels (0 background, 1 liver, 2 tumour) on the volume's grid, or None."""
    if volume.mask_cache_path is None:
        return None
    return _open_npy(str(data_path(settings, volume.mask_cache_path)))


def check_index(volume: Volume, index: int) -> int:
    if not 0 <= index < volume.num_slices:
        raise NotFound(
            f"slice {index} does not exist: volume {volume.id} has slices "
            f"0 to {volume.num_slices - 1}"
        )
    return index


def display_slice(settings: Settings, volume: Volume, index: int) -> np.ndarray:
    """Axial slice in HU as [rows, cols], radiological: anterior up, patient's right on the left.

    Row spacing is spacing[1] (y), column spacing spacing[0] (x). A view into the cache.
    """
    return axial_display(volume_array(settings, volume), check_index(volume, index))


def display_mask(settings: Settings, volume: Volume, index: int) -> np.ndarray | None:
    """The mask slice in the same orientation as `display_slice`, or None without a mask."""
    mask = mask_array(settings, volume)
    return None if mask is None else axial_display(mask, check_index(volume, index))


def render_slice(
    settings: Settings, volume: Volume, index: int, window: Window, overlay: bool = False
) -> bytes:
    """PNG of one slice; with `overlay`, liver and tumour outlines (when there is a mask)."""
    hu = display_slice(settings, volume, index)
    labels = display_mask(settings, volume, index) if overlay else None
    return slice_png(hu, window, labels)


def suggestions(volume: Volume) -> list[int]:
    """Slices whose mask contains liver (ascending)."""
    return [s.index for s in volume.slices if s.liver_pixels > 0]


def volume_out(volume: Volume, progress: dict | None = None) -> dict:
    """The JSON shape of a volume in the API."""
    liver = [s for s in volume.slices if s.liver_pixels > 0]
    out = {
        "id": volume.id,
        "name": volume.name,
        "shape": list(volume.shape),
        "spacing": list(volume.spacing),
        "num_slices": volume.num_slices,
        "hu_min": volume.hu_min,
        "hu_max": volume.hu_max,
        "has_mask": volume.has_mask,
        "is_demo": volume.is_demo,
        "archived": volume.archived_at is not None,
        "orientation": "RAS",
        "affine": volume.affine,
        "source_sha256": volume.source_sha256,
        "liver_slices": len(liver),
        "tumour_slices": sum(1 for s in liver if s.tumour_pixels > 0),
        "created_at": volume.created_at.isoformat() + "Z",
        # issue 12: nifti | dicom | dicom-enhanced
        "source_format": volume.source_format or "nifti",
        "dicom": _dicom_out(volume),
    }
    if progress is not None:
        out["progress"] = progress
    return out


def _dicom_out(volume: Volume) -> dict | None:
    """De-identified DICOM provenance (issue 12); None for NIfTI volumes."""
    if not (volume.source_format or "").startswith("dicom"):
        return None
    return {
        "series_description": volume.series_description,
        "slices": volume.num_slices,
        "spacing": list(volume.spacing),
        "origin_lps": volume.dicom_origin,
        "modality": volume.modality,
        "kvp": volume.kvp,
        "kernel": volume.kernel,
        "contrast_phase": volume.contrast_phase,
    }
