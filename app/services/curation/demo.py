"""Demo data without internet: phantom CT volumes with LiTS masks, written and ingested."""

from __future__ import annotations

import os
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.models import User, Volume
from app.phantom.volume import make_phantom, write_phantom
from app.services.curation.ingest import ingest_file
from app.services.curation.volumes import stored_path
from app.settings import Settings

TUMOUR_CYCLE = (2, 0, 3, 1)  # consecutive demo volumes differ: some normal, up to 3 lesions


def create_demo(
    session: Session,
    settings: Settings,
    volumes: int = 3,
    seed: int = 0,
    user: User | None = None,
    size: int = 512,
) -> list[Volume]:
    """Write uploads/demo/phantom-SEED-I(.seg).nii.gz and ingest them; reruns reuse them."""
    folder = settings.uploads_dir / "demo"
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(volumes):
        stem = f"phantom-{seed}-{i}" + ("" if size == 512 else f"-{size}")
        volume_path, mask_path = folder / f"{stem}.nii.gz", folder / f"{stem}.seg.nii.gz"
        existing = session.scalar(
            select(Volume).where(Volume.source_path == stored_path(settings, volume_path))
        )
        if existing is not None:
            if not existing.is_demo:
                existing.is_demo = True
                session.commit()
            out.append(existing)
            continue
        tumours = TUMOUR_CYCLE[(seed + i) % len(TUMOUR_CYCLE)]
        phantom = make_phantom(seed * 1000 + i, size=size, tumours=tumours)
        _write_atomically(phantom, volume_path, mask_path)
        volume = ingest_file(session, settings, volume_path, mask_path, user)
        volume.is_demo = True  # marked as demo in every list, freeze form and version
        session.commit()
        out.append(volume)
    return out


def _write_atomically(phantom, volume_path: Path, mask_path: Path) -> None:
    """Write under temporary names first so an interrupted run never leaves half a file."""
    tmp_v = volume_path.with_name(f".{volume_path.name}.part.nii.gz")
    tmp_m = mask_path.with_name(f".{mask_path.name}.part.nii.gz")
    try:
        write_phantom(phantom, tmp_v, tmp_m)
        os.replace(tmp_v, volume_path)
        os.replace(tmp_m, mask_path)
    finally:
        tmp_v.unlink(missing_ok=True)
        tmp_m.unlink(missing_ok=True)
