"""The parts both ingest paths share (NIfTI files in ingest.py, DICOM series in
ingest_dicom.py): cache files and the unsaved Volume row for an opened source, the duplicate
checks, the storage error and the audit row. Below both modules, so neither imports the other
for them."""

from __future__ import annotations

import errno
import hashlib
import os
import uuid
from pathlib import Path

import numpy as np
from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from app.errors import Conflict, DomainError, InsufficientStorage, InvalidVolume
from app.imaging.nifti import NiftiSource
from app.imaging.nifti import write_fortran_npy as write_npy
from app.models import AuditEvent, SliceInfo, User, Volume
from app.services.curation.volumes import stored_path
from app.settings import Settings

_STORAGE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}


def storage_error(exc: OSError, name: str) -> DomainError:
    """A clear 507 for a failed write (a full disk or quota says so)."""
    if exc.errno in _STORAGE_ERRNOS:
        return InsufficientStorage(f"not enough disk space to ingest {name} ({exc.strerror})")
    return InsufficientStorage(f"could not store {name}: {exc.strerror or exc}")


def build_volume(
    settings: Settings, vol: NiftiSource, mask: NiftiSource | None, created: list[Path], name: str
) -> Volume:
    """Cache files for an opened volume (and mask on its grid) and the unsaved Volume row."""
    token = uuid.uuid4().hex
    cache = settings.volumes_dir / f"{token}.npy"
    hu_min, hu_max, content = _write_volume(vol, cache, settings.tmp_dir, created)
    if hu_min >= 0 and hu_max <= 2:
        raise InvalidVolume(
            f"{name} holds only the values {hu_min:g}…{hu_max:g}: this is a segmentation "
            "(integer labels), not a CT; send it in the mask field with its CT as the volume"
        )
    liver, tumour = np.zeros(vol.shape[2], np.int64), np.zeros(vol.shape[2], np.int64)
    mask_cache = None
    if mask is not None:
        mask_cache = settings.volumes_dir / f"{token}.mask.npy"
        liver, tumour = _write_mask(mask, mask_cache, settings.tmp_dir, created)
    volume = Volume(
        name=name,
        source_path="",
        cache_path=stored_path(settings, cache),
        mask_cache_path=stored_path(settings, mask_cache) if mask_cache else None,
        shape=list(vol.shape),
        spacing=list(vol.spacing),
        affine=np.round(vol.affine, 6).tolist(),
        hu_min=hu_min,
        hu_max=hu_max,
        content_sha256=content,
    )
    volume.slices = [
        SliceInfo(index=k, liver_pixels=int(liver[k]), tumour_pixels=int(tumour[k]))
        for k in range(vol.shape[2])
    ]
    return volume


def check_duplicate(
    session: Session, name: str, *, source_sha: str | None = None, content_sha: str | None = None,
    series_key: str | None = None,
) -> None:  # fmt: skip
    """Conflict (409) naming the volume that already holds this file, these voxels or series."""
    existing = find_duplicate(session, source_sha, content_sha, series_key)
    if existing is not None:
        raise Conflict(duplicate_message(name, existing))


def find_duplicate(
    session: Session, source_sha: str | None, content_sha: str | None, series_key: str | None
) -> Volume | None:
    """The first volume holding this file, these voxels or this series, if any."""
    terms = []
    if source_sha:
        terms.append(Volume.source_sha256 == source_sha)
    if content_sha:
        terms += [Volume.content_sha256 == content_sha, Volume.source_sha256 == content_sha]
    if series_key:
        terms.append(Volume.series_key == series_key)
    if not terms:
        return None
    return session.scalars(select(Volume).where(or_(*terms)).order_by(Volume.id).limit(1)).first()


def duplicate_message(name: str, existing: Volume) -> str:
    """What a refused re-upload says: which volume already holds it."""
    return (
        f"{name} is already ingested as volume {existing.id} '{existing.name}' "
        f"(/volumes/{existing.id}); nothing was added"
    )


def _publish(write, final: Path, tmp_dir: Path, created: list[Path]) -> None:
    """Write through a temp file in tmp/, then atomically move it into place."""
    tmp = tmp_dir / f"{final.name}.{uuid.uuid4().hex}.part"
    created.append(tmp)
    write(tmp)
    created.append(final)
    os.replace(tmp, final)


def _write_volume(src: NiftiSource, cache: Path, tmp_dir: Path, created: list[Path]) -> tuple:
    """Write the HU cache; returns (min, max, SHA-256 of grid + voxels in cache order)."""
    low, high = [32767], [-32768]
    grid = (np.round(src.affine, 4) + 0.0).tolist()  # + 0.0: no -0.0 from an LPS→RAS flip
    digest = hashlib.sha256(f"{list(src.shape)}{grid}".encode())

    def slabs():
        for _, slab in src.hu_slabs():
            low[0], high[0] = min(low[0], int(slab.min())), max(high[0], int(slab.max()))
            slab = np.asfortranarray(slab, dtype=np.int16)
            digest.update(slab.T.data)
            yield slab

    _publish(lambda p: write_npy(p, np.int16, src.shape, slabs()), cache, tmp_dir, created)
    return float(low[0]), float(high[0]), digest.hexdigest()


def _write_mask(src: NiftiSource, cache: Path, tmp_dir: Path, created: list[Path]) -> tuple:
    """Labels as uint8; per slice, liver counts every labelled pixel (1 and 2), tumour only 2."""
    liver = np.zeros(src.shape[2], np.int64)
    tumour = np.zeros(src.shape[2], np.int64)

    def slabs():
        for k0, slab in src.label_slabs():
            k1 = k0 + slab.shape[2]
            liver[k0:k1] = np.count_nonzero(slab, axis=(0, 1))
            tumour[k0:k1] = np.count_nonzero(slab == 2, axis=(0, 1))
            yield slab

    _publish(lambda p: write_npy(p, np.uint8, src.shape, slabs()), cache, tmp_dir, created)
    return liver, tumour


def ingest_audit(volume: Volume, user: User | None) -> AuditEvent:
    """The audit row of an ingested volume (no identifiers: name, checksum, shape)."""
    return AuditEvent(
        user_id=user.id if user else None,
        action="volume.ingest",
        target=f"volume:{volume.id}",
        detail={"name": volume.name, "sha256": volume.source_sha256, "shape": volume.shape},
    )
