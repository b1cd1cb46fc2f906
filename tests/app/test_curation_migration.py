"""Migration 0006: existing demo volumes are marked as demo; it downgrades cleanly."""

from __future__ import annotations

from alembic import command
from sqlalchemy import inspect, text

from app.db import make_engine
from app.migrate import alembic_config, upgrade

ROW = (
    "INSERT INTO volumes (name, source_path, source_sha256, cache_path, shape, spacing, affine,"
    " hu_min, hu_max, created_at) VALUES (:name, :path, 'x', 'c.npy', '[1,1,1]', '[1,1,1]',"
    " '[]', 0, 0, '2026-01-01 00:00:00')"
)


def test_0006_marks_demo_volumes_and_downgrades(tmp_path):
    url = f"sqlite:///{tmp_path / 'm.db'}"
    upgrade(url, "0005")
    engine = make_engine(url)
    with engine.begin() as conn:
        conn.execute(text(ROW), {"name": "demo", "path": "uploads/demo/phantom-0-0.nii.gz"})
        conn.execute(text(ROW), {"name": "ct", "path": "uploads/ab12/volume-1.nii.gz"})
    upgrade(url, "0006")
    with engine.connect() as conn:
        flags = conn.execute(text("SELECT name, is_demo FROM volumes ORDER BY id")).all()
    assert [tuple(f) for f in flags] == [("demo", 1), ("ct", 0)]
    tables = set(inspect(engine).get_table_names())
    assert {"volume_assignments", "viewer_settings"} <= tables
    command.downgrade(alembic_config(url), "0005")
    engine.dispose()
    engine = make_engine(url)
    columns = {c["name"] for c in inspect(engine).get_columns("volumes")}
    assert "is_demo" not in columns and "archived_at" not in columns
    assert "viewer_settings" not in set(inspect(engine).get_table_names())
    engine.dispose()
