"""Start-up: clear scratch files; on an empty database, an admin (password shown once) and demos."""

from __future__ import annotations

import secrets
import shutil
from collections.abc import Callable

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.models import User, Volume
from app.settings import Settings


def first_start(
    session: Session, settings: Settings, demo: bool, out: Callable[[str], None] = print
) -> None:
    from app.services.accounts.users import create_user

    clean_scratch(settings)
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
