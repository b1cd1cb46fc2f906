"""Ingest NIfTI volumes (with LiTS masks): keep the source, cache int16 RAS arrays, count slices.

An ingest is all or nothing: the cache files and the database rows appear together, and any
failure removes every file this ingest created (the user's own files are never touched).
A re-upload is recognised (same file, or same canonical voxels and grid however packed) and
refused with 409 naming the existing volume; a label image sent as the CT is refused too.
DICOM folders and zips go through ingest_dicom.py; the cache writers and duplicate checks both
use are in volume_cache.py; which files make which volumes (LiTS pairs, --mask, DICOM
detection) is ingest_plan.py.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import uuid
from contextlib import ExitStack
from pathlib import Path

from sqlalchemy.orm import Session

from app.errors import DomainError, InvalidInput, InvalidVolume
from app.imaging.nifti import check_same_grid, nifti_stem, open_nifti
from app.models import User, Volume
from app.services.curation.ingest_dicom import ingest_dicom, result_lines
from app.services.curation.ingest_plan import plan_ingest
from app.services.curation.uploads import safe_filename
from app.services.curation.volume_cache import (
    build_volume,
    check_duplicate,
    ingest_audit,
    storage_error,
)
from app.services.curation.volumes import stored_path, volume_out
from app.settings import Settings


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
        session.add(ingest_audit(volume, user))
        session.commit()
        return volume
    except BaseException as exc:
        session.rollback()
        for p in reversed(created):
            shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise storage_error(exc, name) from exc
        raise


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


def ingest_paths(
    session: Session,
    settings: Settings,
    paths: list[Path],
    mask: Path | None = None,
    user: User | None = None,
) -> list[dict]:
    """Files and folders; LiTS pairs are paired; DICOM folders/zips give one dict per series."""
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
