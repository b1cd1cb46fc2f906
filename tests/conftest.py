"""Shared fixtures: a real database migrated by Alembic and the real app served over HTTP.

The database is a SQLite file, or with MEDSYNTH_TEST_DATABASE=postgresql a fresh database on the
PostgreSQL server at MEDSYNTH_TEST_POSTGRES_URL (`bash tests/services/postgres.sh start` prints
that line): CREATE DATABASE for each test, dropped after it."""

from __future__ import annotations

import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import uvicorn
from sqlalchemy import create_engine, exc, make_url
from sqlalchemy.pool import NullPool

from app.db import display_url, make_engine, make_sessionmaker, session_scope
from app.main import create_app
from app.migrate import upgrade
from app.services.accounts.users import create_token, create_user
from app.settings import Settings

PASSWORD = "correct-horse-battery"


POSTGRES_START = 'eval "$(bash tests/services/postgres.sh start)"'


def selected_database() -> str:
    """`sqlite` (the default) or `postgresql`, from MEDSYNTH_TEST_DATABASE."""
    name = os.environ.get("MEDSYNTH_TEST_DATABASE") or "sqlite"
    if name not in ("sqlite", "postgresql"):
        pytest.fail(f"MEDSYNTH_TEST_DATABASE={name!r}: use sqlite or postgresql", pytrace=False)
    return name


def _postgres_failure(why: str) -> None:
    pytest.fail(f"{why}: start the test server with  {POSTGRES_START}", pytrace=False)


@contextmanager
def fresh_postgres_database() -> Iterator[str]:
    """A new, empty database on the test server (its URL), dropped afterwards."""
    server = os.environ.get("MEDSYNTH_TEST_POSTGRES_URL", "")
    if not server:
        _postgres_failure("MEDSYNTH_TEST_POSTGRES_URL is not set")
    admin = create_engine(server, isolation_level="AUTOCOMMIT", poolclass=NullPool)
    name = f"medsynth_test_{uuid.uuid4().hex[:16]}"
    reason = ""
    try:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    except exc.OperationalError as e:
        reason = str(e.orig or e).strip().splitlines()[0]
    if reason:  # failed outside the except block: one message, no chained traceback
        admin.dispose()
        _postgres_failure(f"PostgreSQL at {display_url(server)} is unreachable ({reason})")
    try:
        yield make_url(server).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:  # FORCE: the app's pooled connections may still be open
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh PostgreSQL database whatever the selection (for PostgreSQL-only tests)."""
    with fresh_postgres_database() as url:
        yield url


@pytest.fixture
def database_url(tmp_path: Path) -> Iterator[str]:
    """The selected database for one test: a SQLite file in its data folder, or PostgreSQL."""
    if selected_database() == "postgresql":
        with fresh_postgres_database() as url:
            yield url
    else:
        yield f"sqlite:///{tmp_path / 'data' / 'medsynth.db'}"


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> Settings:
    data = tmp_path / "data"
    s = Settings(
        data_dir=data,
        database_url=database_url,
        secret_key="test-secret-key",
        max_upload_bytes=64 * 1024**2,
    )
    s.ensure_dirs()
    return s


@pytest.fixture
def db(settings: Settings):
    """A sessionmaker on a database brought to head by the real migrations."""
    upgrade(settings.database_url)
    engine = make_engine(settings.database_url)
    yield make_sessionmaker(engine)
    engine.dispose()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class LiveApp:
    url: str
    settings: Settings
    sessions: object
    tokens: dict[str, str]
    app: object = None  # the FastAPI app (app.state.monitor: its job monitor)

    @property
    def monitor(self):
        return self.app.state.monitor

    def client(self, user: str | None = "admin", **kwargs) -> httpx.Client:
        headers = {"Authorization": f"Bearer {self.tokens[user]}"} if user else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=60, **kwargs)


class _Server(uvicorn.Server):
    def install_signal_handlers(self) -> None:  # runs in a thread
        pass


@pytest.fixture
def live_app(settings: Settings, db) -> Iterator[LiveApp]:
    """The real app on a free port, with users admin, reader1, reader2 (password PASSWORD)."""
    tokens = {}
    with session_scope(db) as session:
        for name, role in (("admin", "admin"), ("reader1", "reviewer"), ("reader2", "reviewer")):
            tokens[name] = create_token(session, create_user(session, name, role, PASSWORD))
    port = _free_port()
    application = create_app(settings)
    config = uvicorn.Config(
        application, host="127.0.0.1", port=port, log_level="warning", lifespan="on"
    )
    server = _Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("test server did not start")
        time.sleep(0.02)
    yield LiveApp(url=f"http://127.0.0.1:{port}", settings=settings, sessions=db, tokens=tokens,
                  app=application)  # fmt: skip
    server.should_exit = True
    thread.join(timeout=10)


@pytest.fixture
def admin(live_app: LiveApp) -> Iterator[httpx.Client]:
    with live_app.client("admin") as c:
        yield c


@pytest.fixture
def reader(live_app: LiveApp) -> Iterator[httpx.Client]:
    with live_app.client("reader1") as c:
        yield c
