"""Shared fixtures: a real SQLite file migrated by Alembic and the real app served over HTTP."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import uvicorn

from app.db import make_engine, make_sessionmaker, session_scope
from app.main import create_app
from app.migrate import upgrade
from app.services.accounts.users import create_token, create_user
from app.settings import Settings

PASSWORD = "correct-horse-battery"


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    data = tmp_path / "data"
    s = Settings(
        data_dir=data,
        database_url=f"sqlite:///{data / 'medsynth.db'}",
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
    config = uvicorn.Config(
        create_app(settings), host="127.0.0.1", port=port, log_level="warning", lifespan="on"
    )
    server = _Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("test server did not start")
        time.sleep(0.02)
    yield LiveApp(url=f"http://127.0.0.1:{port}", settings=settings, sessions=db, tokens=tokens)
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
