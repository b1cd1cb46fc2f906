from sqlalchemy import func, select

from app.db import session_scope
from app.models import User
from app.services.accounts.bootstrap import first_start


def test_first_start_creates_one_admin_and_prints_its_password_once(settings, db):
    lines: list[str] = []
    with session_scope(db) as session:
        first_start(session, settings, demo=False, out=lines.append)
    with session_scope(db) as session:
        first_start(session, settings, demo=False, out=lines.append)
        assert session.scalar(select(func.count()).select_from(User)) == 1
        assert session.scalar(select(User.role)) == "admin"
    assert sum("password:" in line for line in lines) == 1


def test_start_up_removes_scratch_left_by_an_interrupted_request(settings, db):
    (settings.tmp_dir / "half-written.part").write_bytes(b"x" * 10)
    (settings.tmp_dir / "job-grid").mkdir()
    (settings.tmp_dir / "job-grid" / "0.png").write_bytes(b"png")
    with session_scope(db) as session:
        first_start(session, settings, demo=False, out=lambda _: None)
    assert list(settings.tmp_dir.iterdir()) == []
