"""Every revision on PostgreSQL 15: empty → head → base → head, data kept where a revision
rewrites it, and `python -m app migrate` against a postgresql+psycopg URL (issue 20)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from alembic import command
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, make_url, text

from app.db import make_engine
from app.migrate import alembic_config, upgrade

ROOT = Path(__file__).resolve().parents[2]
VOLUME = (
    "INSERT INTO volumes (name, source_path, source_sha256, cache_path, shape, spacing, affine,"
    " hu_min, hu_max, created_at) VALUES (:name, :path, 'x', 'c.npy', '[1,1,1]', '[1,1,1]',"
    " '[]', 0, 0, '2026-01-01 00:00:00')"
)


def _tables(url: str) -> set[str]:
    engine = make_engine(url)
    try:
        return set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


def test_every_revision_upgrades_and_downgrades_on_postgresql(postgres_url, tmp_path):
    sqlite_url = f"sqlite:///{tmp_path / 'same.db'}"
    upgrade(sqlite_url)
    upgrade(postgres_url)
    assert _tables(postgres_url) == _tables(sqlite_url)  # the same schema on both
    revisions = list(ScriptDirectory.from_config(alembic_config(postgres_url)).walk_revisions())
    for rev in revisions:  # head → base one step at a time, so each downgrade runs alone
        command.downgrade(alembic_config(postgres_url), rev.down_revision or "base")
    assert _tables(postgres_url) <= {"alembic_version"}
    upgrade(postgres_url)
    assert _tables(postgres_url) == _tables(sqlite_url)


def test_0006_marks_demo_volumes_with_a_boolean_on_postgresql(postgres_url):
    upgrade(postgres_url, "0005")
    engine = make_engine(postgres_url)
    with engine.begin() as conn:
        conn.execute(text(VOLUME), {"name": "demo", "path": "uploads/demo/phantom-0-0.nii.gz"})
        conn.execute(text(VOLUME), {"name": "ct", "path": "uploads/ab12/volume-1.nii.gz"})
    upgrade(postgres_url, "0006")
    with engine.connect() as conn:
        flags = conn.execute(text("SELECT name, is_demo FROM volumes ORDER BY id")).all()
    engine.dispose()
    assert [tuple(f) for f in flags] == [("demo", True), ("ct", False)]


def test_0009_keys_snapshots_by_nimg_on_postgresql(postgres_url):
    upgrade(postgres_url, "0008")
    engine = make_engine(postgres_url)
    with engine.begin() as conn:
        conn.execute(text(VOLUME), {"name": "ct", "path": "v.nii.gz"})
        conn.execute(
            text(
                'INSERT INTO dataset_versions (name, resolution, "window", window_width,'
                " window_level, bit_depth, content_hash, num_images, num_tumour, created_at)"
                " VALUES ('d', 32, 'liver', 150, 30, 8, 'h', 1, 0, '2026-01-01')"
            )
        )
        conn.execute(
            text(
                "INSERT INTO jobs (dataset_id, state, options, run_dir, resolution, total_kimg,"
                " kimg, device, attempts, created_at) VALUES ((SELECT id FROM dataset_versions),"
                " 'done', '{}', 'r', 32, 1, 1, 'cpu', 1, '2026-01-01')"
            )
        )
        conn.execute(
            text(
                "INSERT INTO snapshots (job_id, kimg, path, size_bytes, created_at)"
                " VALUES ((SELECT id FROM jobs), 2, 'p', 1, '2026-01-01')"
            )
        )
    upgrade(postgres_url, "0009")
    with engine.connect() as conn:
        assert conn.execute(text("SELECT kimg, nimg FROM snapshots")).one() == (2, 2000)
    uniques = inspect(engine).get_unique_constraints("snapshots")
    assert [u["column_names"] for u in uniques] == [["job_id", "nimg"]]
    engine.dispose()
    command.downgrade(alembic_config(postgres_url), "0008")
    engine = make_engine(postgres_url)
    uniques = inspect(engine).get_unique_constraints("snapshots")
    engine.dispose()
    assert [u["column_names"] for u in uniques] == [["job_id", "kimg"]]


def _migrate(url: str, data: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, MEDSYNTH_DATABASE_URL=url, MEDSYNTH_DATA=str(data))
    return subprocess.run(
        [sys.executable, "-m", "app", "migrate"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def test_cli_migrate_on_postgresql_hides_the_password(postgres_url, tmp_path):
    done = _migrate(postgres_url, tmp_path / "data")
    assert done.returncode == 0, done.stderr
    password = make_url(postgres_url).password
    assert "database at revision head" in done.stdout
    assert password not in done.stdout + done.stderr
    assert "alembic_version" in _tables(postgres_url)


def test_cli_migrate_says_which_database_it_cannot_reach(postgres_url, tmp_path):
    missing = make_url(postgres_url).set(database="no_such_database")
    done = _migrate(missing.render_as_string(hide_password=False), tmp_path / "data")
    assert done.returncode == 2
    assert "cannot reach the database" in done.stderr and "no_such_database" in done.stderr
    assert "Traceback" not in done.stderr and missing.password not in done.stderr
