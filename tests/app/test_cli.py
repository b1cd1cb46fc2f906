"""The command line as a user scripts it: accounts, API tokens, and dataset export."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
import uvicorn

from app.db import make_engine, make_sessionmaker, session_scope
from app.main import create_app
from app.services.accounts.users import create_user
from app.services.curation.datasets import freeze_dataset
from app.settings import load_settings
from tests.app.curation_data import curated, user
from tests.conftest import PASSWORD, _free_port, _Server

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def data_env(tmp_path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEDSYNTH_")}
    return {**env, "MEDSYNTH_DATA": str(tmp_path / "data")}


def cli(env: dict, *args: str, stdin: str = "") -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "app", *args],
        input=stdin,
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


@contextmanager
def serve(settings) -> Iterator[str]:
    """The app on the CLI's data folder, over real HTTP."""
    port = _free_port()
    server = _Server(uvicorn.Config(create_app(settings), port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started and time.monotonic() < deadline and thread.is_alive():
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def test_users_create_and_token_usable_as_bearer(data_env):
    r = cli(
        data_env,
        "users",
        "create",
        "rad1",
        "--role",
        "reviewer",
        "--password-stdin",
        stdin="a-long-password\n",
    )
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout.strip().splitlines()[-1])["role"] == "reviewer"

    r = cli(data_env, "users", "token", "rad1")
    assert r.returncode == 0, r.stderr
    token = r.stdout.strip().splitlines()[-1]
    assert token.startswith("ms_")

    with serve(load_settings(data_env)) as url:
        me = httpx.get(url + "/api/me", headers={"Authorization": f"Bearer {token}"})
        assert me.status_code == 200 and me.json()["username"] == "rad1"
        assert httpx.get(url + "/api/me", headers={"Authorization": "Bearer x"}).status_code == 401


def test_users_create_refuses_bad_input_with_a_message(data_env):
    r = cli(
        data_env,
        "users",
        "create",
        "rad1",
        "--role",
        "reviewer",
        "--password-stdin",
        stdin="short\n",
    )
    assert r.returncode == 2 and "at least 10 characters" in r.stderr
    r = cli(data_env, "users", "token", "nobody")
    assert r.returncode == 2 and "no user named 'nobody'" in r.stderr


def test_export_writes_the_same_bytes_as_the_frozen_zip(data_env, tmp_path):
    assert cli(data_env, "migrate").returncode == 0
    settings = load_settings(data_env)
    engine = make_engine(settings.database_url)
    with session_scope(make_sessionmaker(engine)) as s:
        for name in ("admin", "reader1", "reader2"):
            create_user(s, name, "admin" if name == "admin" else "reviewer", PASSWORD)
        curated(s, settings)
        dataset = freeze_dataset(s, settings, "cli", 32, "liver", 8, user(s, "admin"))
        dataset_id, frozen = dataset.id, Path(dataset.zip_path)
    engine.dispose()

    out = tmp_path / "out" / "F.zip"
    out.parent.mkdir()
    r = cli(data_env, "export", str(dataset_id), "--out", str(out))
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout.strip().splitlines()[-1]) == {
        "dataset_id": dataset_id,
        "path": str(out),
    }
    assert out.read_bytes() == frozen.read_bytes()
    assert [p.name for p in out.parent.iterdir()] == ["F.zip"]  # no temporary files left

    r = cli(data_env, "export", "999", "--out", str(tmp_path / "nope.zip"))
    assert r.returncode == 2 and "no dataset version with id 999" in r.stderr
