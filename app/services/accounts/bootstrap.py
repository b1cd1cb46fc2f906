"""Start-up: clear scratch files and what a killed server left behind; on an empty database, an
admin (password shown once) and demos."""

from __future__ import annotations

import secrets
import shutil
import time
from collections.abc import Callable
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.models import User, Volume
from app.services.accounts import sessions, throttle
from app.settings import Settings


def first_start(
    session: Session, settings: Settings, demo: bool, out: Callable[[str], None] = print
) -> None:
    from app.services.accounts.users import create_user

    clean_scratch(settings)
    sweep_orphans(session, settings)
    sessions.purge(session, settings)
    throttle.purge(session, settings)
    if session.scalar(select(func.count()).select_from(User)) == 0:
        password = secrets.token_urlsafe(12)
        create_user(session, "admin", "admin", password)
        session.commit()
        out("=" * 60)
        out("First start: created the admin account")
        out("  username: admin")
        out(f"  password: {password}")
        out("Change it after logging in; it is not shown again.")
        out("=" * 60)
    if demo and session.scalar(select(func.count()).select_from(Volume)) == 0:
        from app.services.curation.demo import create_demo

        out("First start: generating 3 demo CT phantom volumes (about 10-30 s)...")
        for volume in create_demo(session, settings, volumes=3, seed=0):
            out(f"  volume {volume.id}: {volume.name} {volume.shape}")
        session.commit()


def clean_scratch(settings: Settings) -> None:
    """Remove what an interrupted request left in data/tmp; nothing else writes there at start."""
    for entry in settings.tmp_dir.iterdir() if settings.tmp_dir.exists() else ():
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)


ORPHAN_MIN_AGE_S = 60  # younger files may belong to a `python -m app ingest` running right now


def _referenced_uploads(session: Session, settings: Settings) -> set[Path]:
    """Every source file (or folder) a volume row points at, resolved."""
    out: set[Path] = set()
    rows = session.execute(select(Volume.source_path, Volume.mask_source_path))
    for source, mask in rows:
        for stored in (source, mask):
            if stored:
                path = Path(stored)
                out.add((path if path.is_absolute() else settings.data_dir / path).resolve())
    return out


def _is_kept(path: Path, kept: set[Path]) -> bool:
    return path in kept or any(k in path.parents for k in kept)


def sweep_orphans(
    session: Session, settings: Settings, min_age_s: float = ORPHAN_MIN_AGE_S
) -> list:
    """What `kill -9` left: files in uploads/ that no volume row points at, and the temporary
    `.dataset-*.zip.*.tmp` of an interrupted freeze in datasets/. Returns what was removed."""
    cutoff = time.time() - min_age_s
    removed: list[Path] = []
    kept = _referenced_uploads(session, settings)
    uploads = settings.uploads_dir
    files = sorted(uploads.rglob("*"), reverse=True) if uploads.is_dir() else []
    for path in files:  # deepest first, so emptied folders go too
        try:
            old = path.lstat().st_mtime < cutoff
            if path.is_file() and old and not _is_kept(path.resolve(), kept):
                path.unlink()
                removed.append(path)
            elif path.is_dir() and not path.is_symlink() and not any(path.iterdir()):
                emptied = any(r.parent == path for r in removed)
                if (old or emptied) and not _is_kept(path.resolve(), kept):
                    path.rmdir()
        except OSError:
            continue
    if settings.datasets_dir.is_dir():
        for tmp in settings.datasets_dir.glob(".dataset-*.zip.*.tmp"):
            try:
                if tmp.lstat().st_mtime < cutoff:
                    tmp.unlink()
                    removed.append(tmp)
            except OSError:
                continue
    return removed
