"""A study's images are made in the background: creation returns at once, the page counts the
images, a failure is said in words and can be retried or deleted, readers see nothing before
the study is ready, and a preparation cut by a restart is picked up again."""

from __future__ import annotations

import re
import shutil
import struct
import time
import zipfile

import httpx
import pytest
from sqlalchemy import func, select

from app.db import session_scope
from app.models import DatasetVersion, Snapshot, Study, Trial, User
from app.services.studies.create import StudyRequest
from app.services.studies.create import create_study as create_in_db
from app.services.studies.prepare import StudyPreparer
from tests.app.study_setup import (  # noqa: F401  (tiny_run_fixture provides tiny_run)
    add_world,
    tiny_run_fixture,
    wait_ready,
)

pytestmark = pytest.mark.slow  # each study runs `python -m trainer generate`


def _body(world, **kw) -> dict:
    return {"snapshot_id": world.snapshot_id, "dataset_id": world.dataset_id, "n_real": 3,
            "n_fake": 3, "readers": ["reader1"], **kw}  # fmt: skip


def _settled(admin: httpx.Client, sid: int, timeout_s: float = 300.0) -> dict:
    deadline = time.monotonic() + timeout_s
    while (study := admin.get(f"/api/studies/{sid}").json())["state"] == "preparing":
        assert time.monotonic() < deadline, study
        time.sleep(0.2)
    return study


def _corrupt_members(zip_path: str) -> None:
    """Flip the first data bytes of every PNG member: the names still list, reading fails."""
    with zipfile.ZipFile(zip_path) as zf:
        starts = [i.header_offset for i in zf.infolist() if i.filename.endswith(".png")]
    with open(zip_path, "r+b") as f:
        for offset in starts:
            f.seek(offset + 26)
            name_len, extra_len = struct.unpack("<HH", f.read(4))
            f.seek(offset + 30 + name_len + extra_len)
            data = f.read(8)
            f.seek(offset + 30 + name_len + extra_len)
            f.write(bytes(b ^ 0xFF for b in data))


def test_creating_returns_at_once_and_the_study_opens_in_the_background(live_app, admin, tiny_run):
    world = add_world(live_app.sessions, live_app.settings.data_dir / "w", tiny_run)
    r = admin.post("/api/studies", json=_body(world, n_real=4, n_fake=20))
    assert r.status_code == 201, r.text
    study = r.json()
    assert study["state"] == "preparing" and study["prepared"] == 0
    assert study["prepare_error"] is None
    done = wait_ready(admin, study["id"])
    assert done["prepared"] == 24 and done["readers"][0]["total"] == 24
    row = admin.get(f"/studies/{study['id']}/row").text
    assert "hx-trigger" not in row and "generating images" not in row  # polling stops
    with live_app.client("reader1") as r1:
        assert [s["id"] for s in r1.get("/api/studies").json()] == [study["id"]]
        assert r1.get(f"/api/studies/{study['id']}/next").status_code == 200


def test_a_failure_is_said_in_words_hidden_from_readers_and_can_be_retried(
    live_app, admin, tiny_run
):
    world = add_world(live_app.sessions, live_app.settings.data_dir / "w", tiny_run)
    with session_scope(live_app.sessions) as session:
        zip_path = session.get(DatasetVersion, world.dataset_id).zip_path
    shutil.copy(zip_path, zip_path + ".good")
    _corrupt_members(zip_path)  # the synthetic images can be made, the reals not
    sid = admin.post("/api/studies", json=_body(world, n_fake=5)).json()["id"]
    study = _settled(admin, sid)
    assert study["state"] == "failed" and study["prepared"] == 5  # counted as they were made
    assert "zip could not be read" in study["prepare_error"]
    row = admin.get(f"/studies/{sid}/row").text
    assert "zip could not be read" in row and "Retry" in row and "Delete" in row
    assert "Traceback" not in row and "hx-trigger" not in row
    with live_app.client("reader1") as r1:
        assert r1.get("/api/studies").json() == []
        for url in (f"/api/studies/{sid}", f"/api/studies/{sid}/next", f"/studies/{sid}/read"):
            assert r1.get(url).status_code == 404, url
    assert admin.post(f"/api/studies/{sid}/close").status_code == 409  # never opened

    shutil.copy(zip_path + ".good", zip_path)
    again = admin.post(f"/api/studies/{sid}/retry")
    assert again.status_code == 200 and again.json()["state"] == "preparing"
    assert admin.post(f"/api/studies/{sid}/retry").status_code == 409  # one retry at a time
    assert wait_ready(admin, sid)["prepared"] == 8
    with live_app.client("reader1") as r1:
        assert r1.get(f"/api/studies/{sid}/next").status_code == 200
    assert admin.delete(f"/api/studies/{sid}").status_code == 409  # an open study is kept


def test_a_study_that_never_opened_is_deleted_with_its_files(live_app, admin, tiny_run, tmp_path):
    world = add_world(live_app.sessions, live_app.settings.data_dir / "w", tiny_run)
    broken = tmp_path / "broken.pt"  # the trainer fails: its message reaches the admin
    broken.write_bytes(b"not a snapshot")
    with session_scope(live_app.sessions) as session:
        session.get(Snapshot, world.snapshot_id).path = str(broken)
    sid = admin.post("/api/studies", json=_body(world)).json()["id"]
    study = _settled(admin, sid)
    assert study["state"] == "failed" and "could not make" in study["prepare_error"]
    assert "--" not in study["prepare_error"]  # no trainer command-line wording
    assert admin.delete(f"/api/studies/{sid}").status_code == 204
    assert admin.get(f"/api/studies/{sid}").status_code == 404
    studies = live_app.settings.data_dir / "studies"
    assert not studies.exists() or not any(studies.iterdir())  # no staging folder left


def test_a_preparation_cut_by_a_restart_is_picked_up_again(live_app, admin, tiny_run):
    world = add_world(live_app.sessions, live_app.settings.data_dir / "w", tiny_run)
    live_app.monitor.stop()  # the app goes down: nobody makes the images
    with session_scope(live_app.sessions) as session:
        owner = session.scalar(select(User).where(User.username == "admin"))
        req = StudyRequest(world.snapshot_id, world.dataset_id, 2, 3, ["reader1", "reader2"])
        sid = create_in_db(session, live_app.settings, owner, req).id
        session.execute(Study.__table__.update().where(Study.id == sid).values(prepared=2))
    leftover = live_app.settings.data_dir / "studies" / str(sid)
    leftover.mkdir(parents=True)
    (leftover / "cut.png").write_bytes(b"half of an attempt")
    assert admin.get(f"/api/studies/{sid}").json()["state"] == "preparing"

    restarted = StudyPreparer(live_app.settings, live_app.sessions)  # a new process's follower
    with session_scope(live_app.sessions) as session:
        restarted.tick(session, start=True)
    study = wait_ready(admin, sid)
    assert study["prepared"] == 5 and not (leftover / "cut.png").exists()
    assert len(list(leftover.glob("*.png"))) == 5
    with session_scope(live_app.sessions) as session:
        assert session.scalar(select(func.count(Trial.id))) == 10  # 5 per reader, once


def test_the_list_page_polls_the_row_of_a_preparing_study(live_app, admin, tiny_run):
    world = add_world(live_app.sessions, live_app.settings.data_dir / "w", tiny_run)
    live_app.monitor.stop()  # nothing makes the images: the study stays preparing
    sid = admin.post("/api/studies", json=_body(world)).json()["id"]
    page = admin.get("/studies").text
    row = re.search(rf'<tr id="study-{sid}"[^>]*>', page).group(0)
    assert f'hx-get="/studies/{sid}/row"' in row and "every 1s" in row
    assert "generating images: 0 of 6" in admin.get(f"/studies/{sid}/row").text
    assert f"/studies/{sid}/results" not in page  # no results before the images exist


def test_readers_are_blind_from_the_moment_a_study_names_them(live_app, admin, tiny_run):
    """While the images are still being made, the study's generator and data are hidden from
    its readers already: what they saw then could be matched against the trials later."""
    world = add_world(live_app.sessions, live_app.settings.data_dir / "w", tiny_run)
    with session_scope(live_app.sessions) as session:
        job_id = session.get(Snapshot, world.snapshot_id).job_id
    urls = [f"/api/jobs/{job_id}/samples/latest.png",
            f"/api/snapshots/{world.snapshot_id}/samples.png",
            f"/api/datasets/{world.dataset_id}/export.zip"]  # fmt: skip
    with live_app.client("reader1") as r1:
        before = [r1.get(u).status_code for u in urls]
        live_app.monitor.stop()  # nothing makes the images: the study stays preparing
        sid = admin.post("/api/studies", json=_body(world)).json()["id"]
        assert admin.get(f"/api/studies/{sid}").json()["state"] == "preparing"
        during = [r1.get(u).status_code for u in urls]
    assert 403 not in before, before
    assert during == [403, 403, 403], during
