"""First start: an admin account (password printed once) and demo volumes on an empty database."""

from __future__ import annotations

import secrets
from collections.abc import Callable

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.models import User, Volume
from app.settings import Settings


def first_start(
    session: Session, settings: Settings, demo: bool, out: Callable[[str], None] = print
) -> None:
    from app.services.users import create_user

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
        from app.services.demo import create_demo

        out("First start: generating demo CT phantom volumes (a few seconds)...")
        for volume in create_demo(session, settings, volumes=3, seed=0):
            out(f"  volume {volume.id}: {volume.name} {volume.shape}")
        session.commit()
