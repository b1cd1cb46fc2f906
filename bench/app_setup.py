"""What the app benchmarks share: a migrated data folder, one ingested phantom, peak memory.

Imported by the benchmark scripts and by the child processes they time (run with the
repository root on PYTHONPATH), so every benchmark sets the app up the same way.
"""

from __future__ import annotations

import resource
from pathlib import Path


def peak_kb() -> int:
    """This process's peak resident memory in KiB (VmHWM; ru_maxrss where /proc is absent)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def app_env(data: Path, database_url: str | None = None) -> dict[str, str]:
    """The MEDSYNTH_* variables of a benchmark's app (SQLite in `data` unless a URL is given)."""
    env = {"MEDSYNTH_DATA": str(data), "MEDSYNTH_SECRET_KEY": "bench"}
    return env | ({"MEDSYNTH_DATABASE_URL": database_url} if database_url else {})


def app_sessions(data: Path, database_url: str | None = None):
    """Settings for a data folder at `data`, migrated to head, and a sessionmaker on it."""
    from app.db import make_engine, make_sessionmaker
    from app.migrate import upgrade
    from app.settings import load_settings

    settings = load_settings(app_env(data, database_url))
    settings.ensure_dirs()
    upgrade(settings.database_url)
    return settings, make_sessionmaker(make_engine(settings.database_url))


def ingest_phantom(
    data: Path, slices: int, user: tuple[str, str, str], database_url: str | None = None
) -> str:
    """One 512×512 phantom (with its mask) ingested into a fresh data folder, and a user
    (name, role, password); returns an API token of that user."""
    from app.db import session_scope
    from app.phantom.volume import make_phantom, write_phantom
    from app.services.accounts.users import create_token, create_user
    from app.services.curation.ingest import ingest_file

    settings, sessions = app_sessions(data, database_url)
    write_phantom(make_phantom(1, size=512, slices=slices), data / "v.nii.gz", data / "m.nii.gz")
    with session_scope(sessions) as s:
        ingest_file(s, settings, data / "v.nii.gz", data / "m.nii.gz")
        token = create_token(s, create_user(s, *user))
    sessions.kw["bind"].dispose()
    return token
