"""Ingest NIfTI volumes (with LiTS masks): keep the source, cache int16 RAS arrays, count slices.

An ingest is all or nothing: the cache files and the database rows appear together, and any
failure removes every file this ingest created (the user's own files are never touched).
A re-upload is recognised (same file, or same canonical voxels and grid however packed) and
refused with 409 naming the existing volume; a label image sent as the CT is refused too.
DICOM folders and zips go through ingest_dicom.py, which shares the cache writers below; which
files make which volumes (LiTS pairs, --mask, DICOM detection) is ingest_plan.py.
"""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
import uuid
from contextlib import ExitStack
from pathlib import Path

import numpy as np
from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from app.errors import Conflict, DomainError, InsufficientStorage, InvalidInput, InvalidVolume
from app.imaging.nifti import NiftiSource, check_same_grid, nifti_stem, open_nifti
from app.imaging.nifti import write_fortran_npy as write_npy
from app.models import AuditEvent, SliceInfo, User, Volume
from app.services.curation.ingest_plan import plan_ingest
from app.services.curation.uploads import safe_filename
from app.services.curation.volumes import stored_path, volume_out
from app.settings import Settings

_STORAGE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}


def ingest_file(
    session: Session,
    settings: Settings,
    path: Path,
    mask_path: Path | None = None,
    user: User | None = None,
    original_name: str | None = None,
    *,
    mask_name: str | None = None,
    move: bool = False,
) -> Volume:
    """Ingest one volume (and optional mask) and commit; `move` takes staged uploads over."""
    name = original_name or path.name
    mask_name = mask_name or (mask_path.name if mask_path else None)
    for shown, p in ((name, path), (mask_name, mask_path)):
        if p is not None and nifti_stem(shown or "") is None:
            raise InvalidVolume(f"{shown}: only .nii and .nii.gz files are accepted")
        if p is not None and not p.is_file():
            raise InvalidInput(f"{shown}: no such file")
    created: list[Path] = []
    try:
        folder = settings.uploads_dir / uuid.uuid4().hex
        source, sha = _keep(settings, path, folder, name, created, move)
        check_duplicate(session, name, source_sha=sha)
        mask_source = None
        if mask_path is not None:
            mask_source, _ = _keep(settings, mask_path, folder / "mask", mask_name, created, move)
        volume = _convert(settings, source, mask_source, name, mask_name, created)
        check_duplicate(session, name, content_sha=volume.content_sha256)
        volume.source_sha256 = sha
        volume.source_format = "nifti"
        volume.created_by_id = user.id if user else None
        session.add(volume)
        session.flush()
        session.add(_audit(volume, user))
        session.commit()
        return volume
    except BaseException as exc:
        session.rollback()
        for p in reversed(created):
            shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise _storage_error(exc, name) from exc
        raise


def _storage_error(exc: OSError, name: str) -> DomainError:
    if exc.errno in _STORAGE_ERRNOS:
        return InsufficientStorage(f"not enough disk space to ingest {name} ({exc.strerror})")
    return InsufficientStorage(f"could not store {name}: {exc.strerror or exc}")


def _keep(
    settings: Settings, path: Path, folder: Path, name: str, created: list[Path], move: bool
) -> tuple[Path, str]:
    """The source inside uploads/: used in place if already there, else moved or copied."""
    if path.resolve().is_relative_to(settings.uploads_dir.resolve()):
        return path, _sha256(path)
    missing = [p for p in (folder, *folder.parents) if not p.exists()]
    if missing:
        folder.mkdir(parents=True)
        created.append(missing[-1])
    dest = folder / safe_filename(name)
    if move:
        os.replace(path, dest)
        created.append(dest)
        return dest, _sha256(dest)
    created.append(dest)
    digest = hashlib.sha256()
    with open(path, "rb") as fin, open(dest, "wb") as fout:
        while chunk := fin.read(4 * 1024**2):
            digest.update(chunk)
            fout.write(chunk)
    return dest, digest.hexdigest()


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(4 * 1024**2):
            digest.update(chunk)
    return digest.hexdigest()


def _convert(
    settings: Settings,
    source: Path,
    mask_source: Path | None,
    name: str,
    mask_name: str | None,
    created: list[Path],
) -> Volume:
    """Validate both images, then stream them into cache files (temp file + os.replace)."""
    limit = settings.max_decompressed_bytes
    with ExitStack() as stack:
        vol = stack.enter_context(open_nifti(source, settings.tmp_dir, name, limit))
        mask = None
        if mask_source is not None:
            mask = stack.enter_context(open_nifti(mask_source, settings.tmp_dir, mask_name, limit))
            check_same_grid(vol, mask)
        volume = build_volume(settings, vol, mask, created, name)
    volume.name = nifti_stem(name) or name
    volume.source_path = stored_path(settings, source)
    volume.mask_source_path = stored_path(settings, mask_source) if mask_source else None
    return volume


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


def _audit(volume: Volume, user: User | None) -> AuditEvent:
    return AuditEvent(
        user_id=user.id if user else None,
        action="volume.ingest",
        target=f"volume:{volume.id}",
        detail={"name": volume.name, "sha256": volume.source_sha256, "shape": volume.shape},
    )


def ingest_paths(
    session: Session,
    settings: Settings,
    paths: list[Path],
    mask: Path | None = None,
    user: User | None = None,
) -> list[dict]:
    """Files and folders; LiTS pairs are paired; DICOM folders/zips give one dict per series."""
    from app.services.curation.ingest_dicom import ingest_dicom, result_lines

    results: list[dict] = []
    for item in plan_ingest(paths, mask):
        if isinstance(item, dict):
            results.append(item)
            continue
        volume_path, mask_path = item[0], item[1]
        try:
            if len(item) == 3:
                done = ingest_dicom(session, settings, volume_path, mask_path, user)
                results += result_lines(str(volume_path), done)
                continue
            volume = ingest_file(session, settings, volume_path, mask_path, user)
        except DomainError as exc:
            results.append({"path": str(volume_path), "error": exc.detail})
        else:
            results.append({"path": str(volume_path), **volume_out(volume)})
    return results
