"""Bring the database to the newest Alembic revision (the only way the schema changes)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import exc

from app.db import display_url, make_engine
from app.errors import DomainError

ROOT = Path(__file__).resolve().parent.parent


def alembic_config(database_url: str) -> Config:
    cfg = Config(str(ROOT / "alembic.ini"))
    cfg.set_main_option("script_location", str(ROOT / "migrations"))
    cfg.attributes["database_url"] = database_url
    return cfg


def check_reachable(database_url: str) -> None:
    """Say in words which database cannot be reached (or is not supported), not a traceback."""
    try:
        engine = make_engine(database_url)
    except (exc.ArgumentError, exc.NoSuchModuleError) as e:
        raise DomainError(
            f"unsupported MEDSYNTH_DATABASE_URL {display_url(database_url)}: {e}"
        ) from None
    try:
        with engine.connect():
            pass
    except exc.OperationalError as e:
        reason = str(e.orig or e).strip().splitlines()[0]
        raise DomainError(
            f"cannot reach the database {display_url(database_url)}: {reason}"
        ) from None
    finally:
        engine.dispose()


def upgrade(database_url: str, revision: str = "head") -> None:
    check_reachable(database_url)
    try:
        command.upgrade(alembic_config(database_url), revision)
    except exc.DBAPIError as e:  # e.g. a role without CREATE on the schema
        reason = str(e.orig or e).strip().splitlines()[0]
        raise DomainError(f"migrating {display_url(database_url)} failed: {reason}") from None
