"""Faults with the real trainer: cancel, SIGKILL mid-tick, the queue, and an app restart."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

import httpx
import pytest

from app.db import session_scope
from app.models import Job
from app.services.accounts.users import create_token, create_user
from app.services.training import jobs as svc
from app.services.training.job_monitor import JobMonitor
from app.trainer_client.processes import Devices
from tests.app.job_helpers import TINY, kill_trainers, make_dataset, trainer_pids, wait_for
from tests.conftest import PASSWORD

pytestmark = pytest.mark.slow
LONG = {**TINY, "kimg": 2}  # minutes on a CPU: always stopped by the test


@pytest.fixture
def no_stray_trainers(settings):
    yield
    kill_trainers(settings.runs_dir)


def _job(client, job_id: int) -> dict:
    return client.get(f"/api/jobs/{job_id}").json()


def _state(client, job_id: int, *states: str, what: str = "", timeout: float = 180) -> dict:
    return wait_for(
        lambda: (j := _job(client, job_id))["state"] in states and j,
        timeout=timeout,
        what=what or f"job {job_id} to be {'/'.join(states)}",
    )


def _training(client, job_id: int) -> dict:
    """Running with at least one tick done (the trainer installed its SIGTERM handler)."""
    return wait_for(
        lambda: (j := _job(client, job_id))["state"] == "running" and j["kimg"] > 0 and j,
        what=f"job {job_id} to train",
    )


def test_cancel_writes_a_snapshot_and_a_second_click_is_harmless(
    live_app, admin, no_stray_trainers
):
    ds = make_dataset(live_app.sessions, live_app.settings)
    job_id = admin.post("/api/jobs", json={"dataset_id": ds, **LONG}).json()["id"]
    _training(admin, job_id)
    first = admin.post(f"/api/jobs/{job_id}/cancel")
    second = admin.post(f"/api/jobs/{job_id}/cancel")
    assert first.status_code == 202 and first.json()["state"] == "cancelling"
    assert second.status_code in (200, 202)
    assert second.json()["state"] in ("cancelling", "cancelled")
    assert second.json()["cancel_requested_at"] == first.json()["cancel_requested_at"]

    job = _state(admin, job_id, "cancelled", "failed", "completed")
    assert job["state"] == "cancelled" and job["exit_code"] == 4, job  # 4: stopped, resumable
    assert job["snapshots"], "SIGTERM must leave a snapshot"
    assert "stop requested (SIGTERM)" in job["log_tail"]
    again = admin.post(f"/api/jobs/{job_id}/cancel")
    assert again.status_code == 200 and again.json()["state"] == "cancelled"

    # resume continues the same row and run dir (here only a little further)
    r = admin.post(f"/api/jobs/{job_id}/resume", json={"kimg": round(job["kimg"] + 0.032, 3)})
    assert r.status_code == 202 and r.json()["state"] == "queued"
    assert admin.post(f"/api/jobs/{job_id}/resume").status_code == 409  # already queued
    done = _state(admin, job_id, "completed", "failed", "cancelled")
    assert done["state"] == "completed", done
    assert done["attempts"] == 2 and done["run_dir"] == job["run_dir"]
    assert "resumed at kimg" in done["log_tail"]
    r = admin.post(f"/api/jobs/{job_id}/cancel")
    assert r.status_code == 409 and "already completed" in r.json()["detail"]


def test_sigkill_mid_tick_fails_fast_and_resume_completes_from_the_last_snapshot(
    live_app, admin, no_stray_trainers
):
    ds = make_dataset(live_app.sessions, live_app.settings)
    job_id = admin.post("/api/jobs", json={"dataset_id": ds, **LONG}).json()["id"]
    job = wait_for(
        lambda: (j := _job(admin, job_id))["snapshots"] and j["state"] == "running" and j,
        what="a first snapshot",
    )
    os.killpg(job["pid"], signal.SIGKILL)
    killed_at = time.monotonic()
    failed = _state(admin, job_id, "failed", "interrupted", timeout=30)
    assert time.monotonic() - killed_at < 10
    assert failed["state"] == "failed" and failed["exit_code"] == -9
    assert "SIGKILL" in failed["error"] and failed["log_tail"]
    assert failed["finished_at"] is not None

    r = admin.post(f"/api/jobs/{job_id}/resume", json={"kimg": round(failed["kimg"] + 0.032, 3)})
    assert r.status_code == 202, r.text
    done = _state(admin, job_id, "completed", "failed")
    assert done["state"] == "completed", done
    assert done["exit_code"] == 0 and done["error"] is None and done["attempts"] == 2
    assert "resumed at kimg" in done["log_tail"]


def test_with_one_slot_the_second_job_waits_in_the_queue(live_app, admin, no_stray_trainers):
    assert live_app.settings.max_concurrent_jobs == 1
    ds = make_dataset(live_app.sessions, live_app.settings)
    first = admin.post("/api/jobs", json={"dataset_id": ds, **LONG}).json()["id"]
    second = admin.post("/api/jobs", json={"dataset_id": ds, **LONG}).json()["id"]
    _training(admin, first)
    time.sleep(1.5)  # a few monitor passes
    assert _job(admin, second)["state"] == "queued"
    assert len(trainer_pids(live_app.settings.runs_dir)) == 1

    admin.post(f"/api/jobs/{first}/cancel")
    _state(admin, first, "cancelled")
    started = _state(admin, second, "running")
    assert started["pid"] and started["pid"] != _job(admin, first)["pid"]
    admin.post(f"/api/jobs/{second}/cancel")
    _state(admin, second, "cancelled")
    # cancelling a queued job needs no process at all
    third = admin.post("/api/jobs", json={"dataset_id": ds, **LONG}).json()["id"]
    fourth = admin.post("/api/jobs", json={"dataset_id": ds, **LONG}).json()["id"]
    assert admin.post(f"/api/jobs/{fourth}/cancel").json()["state"] == "cancelled"
    _training(admin, third)
    admin.post(f"/api/jobs/{third}/cancel")
    _state(admin, third, "cancelled")


# ---- the web app restarts while a trainer runs ----------------------------------------------


def _serve(settings, port: int) -> subprocess.Popen:
    env = {**os.environ, "MEDSYNTH_DATA": str(settings.data_dir), "MEDSYNTH_SECRET_KEY": "t",
           "MEDSYNTH_DATABASE_URL": settings.database_url}  # fmt: skip
    proc = subprocess.Popen(
        [sys.executable, "-m", "app", "serve", "--port", str(port)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    wait_for(lambda: _healthy(port), timeout=60, what="the app to serve")
    return proc


def _healthy(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def app_process(db, settings, no_stray_trainers):
    """The app as its own process (`python -m app serve`), with a training job started in it."""
    with session_scope(db) as session:
        token = create_token(session, create_user(session, "admin", "admin", PASSWORD))
    ds = make_dataset(db, settings)
    port = _free_port()
    server = _serve(settings, port)
    client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30,
                          headers={"Authorization": f"Bearer {token}"})  # fmt: skip
    job_id = client.post("/api/jobs", json={"dataset_id": ds, **LONG}).json()["id"]
    wait_for(lambda: _job(client, job_id)["snapshots"], what="a first snapshot")
    yield server, job_id
    client.close()
    server.kill()
    server.wait()


def _row(db, job_id: int) -> Job:
    with session_scope(db) as session:
        return svc.get_job(session, job_id)


def test_after_an_app_restart_the_monitor_reattaches_to_the_running_trainer(
    db, settings, app_process
):
    server, job_id = app_process
    server.kill()  # the app dies; its trainer (own session) keeps training
    server.wait()
    before = _row(db, job_id)
    assert before.state == "running" and trainer_pids(settings.runs_dir) == [before.pid]

    monitor = JobMonitor(settings, db, interval=0.2, devices=Devices()).start()
    try:
        later = wait_for(
            lambda: (
                (j := _row(db, job_id)).kimg > before.kimg
                and j.heartbeat_at > before.heartbeat_at
                and j
            ),
            what="progress followed through /proc",
        )
        assert later.state == "running" and later.pid == before.pid
        with session_scope(db) as session:
            admin = svc.get_job(session, job_id).created_by
            assert svc.cancel_job(session, job_id, admin).state == "cancelling"
        gone = wait_for(lambda: (j := _row(db, job_id)).state != "cancelling" and j, timeout=60)
        # not our child to reap: the exit code comes from the trainer's exit.json record
        assert gone.state == "cancelled" and gone.exit_code == 4
        assert not trainer_pids(settings.runs_dir)
    finally:
        monitor.stop()


def test_after_an_app_restart_a_vanished_trainer_is_marked_interrupted_and_resumes(
    db, settings, app_process
):
    server, job_id = app_process
    server.kill()
    server.wait()
    pid = _row(db, job_id).pid
    os.killpg(pid, signal.SIGKILL)  # the machine "rebooted": the trainer is gone too
    wait_for(lambda: not trainer_pids(settings.runs_dir), timeout=10, what="the trainer to die")

    monitor = JobMonitor(settings, db, interval=0.2, devices=Devices()).start()
    try:
        job = wait_for(lambda: (j := _row(db, job_id)).state != "running" and j, timeout=10)
        assert job.state == "interrupted" and "gone" in job.error and job.exit_code is None
        with session_scope(db) as session:
            admin = svc.get_job(session, job_id).created_by
            svc.resume_job(session, job_id, admin, kimg=round(job.kimg + 0.032, 3))
        monitor.wake()
        done = wait_for(
            lambda: (j := _row(db, job_id)).state in ("completed", "failed") and j,
            what="the resumed job to finish",
        )
        assert done.state == "completed" and done.exit_code == 0 and done.attempts == 2
    finally:
        monitor.stop()
