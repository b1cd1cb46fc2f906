"""Ingest NIfTI volumes (with LiTS masks): keep the source, cache int16 RAS arrays, count slices.

An ingest is all or nothing: the cache files and the database rows appear together, and any
failure removes every file this ingest created (the user's own files are never touched).
"""

from __future__ import annotations

import errno
import hashlib
import os
import re
import shutil
import uuid
from contextlib import ExitStack
from pathlib import Path

import numpy as np
from sqlalchemy.orm import Session

from app.errors import DomainError, InsufficientStorage, InvalidInput, InvalidVolume
from app.imaging.nifti import NiftiSource, check_same_grid, nifti_stem, open_nifti
from app.imaging.nifti import write_fortran_npy as write_npy
from app.models import AuditEvent, SliceInfo, User, Volume
from app.services.curation.uploads import safe_filename
from app.services.curation.volumes import stored_path, volume_out
from app.settings import Settings

LITS_NAME = re.compile(r"^(volume|segmentation)-(\d+)\.nii(\.gz)?$", re.IGNORECASE)
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
        mask_source = None
        if mask_path is not None:
            mask_source, _ = _keep(settings, mask_path, folder / "mask", mask_name, created, move)
        volume = _convert(settings, source, mask_source, name, mask_name, created)
        volume.source_sha256 = sha
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
    token = uuid.uuid4().hex
    with ExitStack() as stack:
        vol = stack.enter_context(open_nifti(source, settings.tmp_dir, name))
        mask = None
        if mask_source is not None:
            mask = stack.enter_context(open_nifti(mask_source, settings.tmp_dir, mask_name))
            check_same_grid(vol, mask)
        cache = settings.volumes_dir / f"{token}.npy"
        hu_min, hu_max = _write_volume(vol, cache, settings.tmp_dir, created)
        liver, tumour = np.zeros(vol.shape[2], np.int64), np.zeros(vol.shape[2], np.int64)
        mask_cache = None
        if mask is not None:
            mask_cache = settings.volumes_dir / f"{token}.mask.npy"
            liver, tumour = _write_mask(mask, mask_cache, settings.tmp_dir, created)
    volume = Volume(
        name=nifti_stem(name) or name,
        source_path=stored_path(settings, source),
        mask_source_path=stored_path(settings, mask_source) if mask_source else None,
        cache_path=stored_path(settings, cache),
        mask_cache_path=stored_path(settings, mask_cache) if mask_cache else None,
        shape=list(vol.shape),
        spacing=list(vol.spacing),
        affine=np.round(vol.affine, 6).tolist(),
        hu_min=hu_min,
        hu_max=hu_max,
    )
    volume.slices = [
        SliceInfo(index=k, liver_pixels=int(liver[k]), tumour_pixels=int(tumour[k]))
        for k in range(vol.shape[2])
    ]
    return volume


def _publish(write, final: Path, tmp_dir: Path, created: list[Path]) -> None:
    """Write through a temp file in tmp/, then atomically move it into place."""
    tmp = tmp_dir / f"{final.name}.{uuid.uuid4().hex}.part"
    created.append(tmp)
    write(tmp)
    created.append(final)
    os.replace(tmp, final)


def _write_volume(src: NiftiSource, cache: Path, tmp_dir: Path, created: list[Path]) -> tuple:
    low, high = [32767], [-32768]

    def slabs():
        for _, slab in src.hu_slabs():
            low[0], high[0] = min(low[0], int(slab.min())), max(high[0], int(slab.max()))
            yield slab

    _publish(lambda p: write_npy(p, np.int16, src.shape, slabs()), cache, tmp_dir, created)
    return float(low[0]), float(high[0])


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
    """Files and folders; LiTS volume-N/segmentation-N are paired. One dict per volume/failure."""
    results: list[dict] = []
    for item in plan_ingest(paths, mask):
        if isinstance(item, dict):
            results.append(item)
            continue
        volume_path, mask_path = item
        try:
            volume = ingest_file(session, settings, volume_path, mask_path, user)
        except DomainError as exc:
            results.append({"path": str(volume_path), "error": exc.detail})
        else:
            results.append({"path": str(volume_path), **volume_out(volume)})
    return results


def plan_ingest(paths: list[Path], mask: Path | None) -> list[tuple[Path, Path | None] | dict]:
    """(volume, mask) pairs in order, and {"path", "error"} for what cannot be ingested."""
    files: list[Path] = []
    plan: list = []
    for p in paths:
        if p.is_dir():
            found = (f for f in p.rglob("*") if f.is_file() and nifti_stem(f.name))
            files += sorted(found, key=_natural)
        elif p.is_file():
            files.append(p)
        else:
            plan.append({"path": str(p), "error": "no such file or folder"})
    masks = [f for f in files if _lits(f) and _lits(f)[0] == "segmentation"]
    volumes = [f for f in files if f not in masks]
    if mask is not None:
        if len(volumes) != 1:
            raise InvalidInput(f"--mask needs exactly one volume, got {len(volumes)}")
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
