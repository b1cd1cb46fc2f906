from sqlalchemy import inspect

from app.db import make_engine
from app.migrate import upgrade


def test_upgrade_creates_every_table_on_an_empty_database(tmp_path):
    url = f"sqlite:///{tmp_path / 'empty.db'}"
    upgrade(url)
    engine = make_engine(url)
    tables = set(inspect(engine).get_table_names())
    assert {
        "users",
        "api_tokens",
        "volumes",
        "slices",
        "reviews",
        "dataset_versions",
        "dataset_items",
        "audit_events",
        "alembic_version",
    } <= tables
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    engine.dispose()


def _current_and_head(url: str) -> tuple[str | None, str | None]:
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    from app.migrate import alembic_config

    head = ScriptDirectory.from_config(alembic_config(url)).get_current_head()
    engine = make_engine(url)
    with engine.connect() as conn:
        current = MigrationContext.configure(conn).get_current_revision()
    engine.dispose()
    return current, head


def test_upgrade_twice_is_a_no_op_and_stays_at_head(tmp_path):
    url = f"sqlite:///{tmp_path / 'twice.db'}"
    upgrade(url)
    first = _current_and_head(url)
    upgrade(url)
    current, head = _current_and_head(url)
    assert head is not None and current == head and first == (current, head)


def test_healthz_answers_without_login(live_app):
    import httpx

    r = httpx.get(live_app.url + "/healthz")
    assert r.status_code == 200 and r.json() == {"status": "ok"}
