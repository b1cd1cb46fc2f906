"""The utility follower after a restart and on cancel: a run whose process is gone is closed
from what it left (result: completed; nothing: failed, interrupted); cancel of a queued run."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from app.db import session_scope
from app.models import DatasetVersion, Job, Snapshot, User, UtilityRun
from app.services import background_runs
from app.services.accounts.users import create_user
from app.services.utility import runs
from app.services.utility.monitor import INTERRUPTED, UtilityRunFollower
from tests.conftest import PASSWORD


def _dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def _run(session, run_dir: Path, state: str = "running") -> int:
    ds = DatasetVersion(
        name="d",
        resolution=16,
        window="liver",
        window_width=150,
        window_level=30,
        bit_depth=8,
        content_hash="0" * 64,
        num_images=1,
    )
    session.add(ds)
    session.flush()
    job = Job(dataset_id=ds.id, resolution=16, total_kimg=0, state="completed")
    session.add(job)
    session.flush()
    snap = Snapshot(job_id=job.id, kimg=0, path="/nonexistent.pt")
    session.add(snap)
    session.flush()
    run = UtilityRun(
        snapshot_id=snap.id,
        train_dataset_id=ds.id,
        test_dataset_id=ds.id,
        task="segmentation",
        state=state,
        options={},
        request_key=background_runs.request_key({"run_dir": str(run_dir)}),  # 64 hex chars
        run_dir=str(run_dir),
        pid=_dead_pid() if state == "running" else None,
    )
    session.add(run)
    session.flush()
    return run.id


def test_a_gone_process_is_closed_from_what_it_left(db, settings, tmp_path):
    done, lost = tmp_path / "done", tmp_path / "lost"
    for d in (done, lost):
        d.mkdir()
    (done / background_runs.RESULT_FILE).write_text(
        json.dumps({"task": "segmentation", "results": []})
    )
    (done / background_runs.PROGRESS_FILE).write_text('{"message": "estimate: about 1 min"}\n')
    with session_scope(db) as s:
        ids = _run(s, done), _run(s, lost)
    with session_scope(db) as s:
        UtilityRunFollower(settings).tick(s, start=False)  # the re-attach pass after a restart
    with session_scope(db) as s:
        finished, interrupted = (s.get(UtilityRun, i) for i in ids)
        assert finished.state == "completed" and finished.result["task"] == "segmentation"
        assert finished.progress["estimate"] == "estimate: about 1 min"
        assert interrupted.state == "failed" and interrupted.error == INTERRUPTED


def test_cancel_of_a_queued_run_is_immediate_and_repeatable(db, settings, tmp_path):
    with session_scope(db) as s:
        admin = create_user(s, "admin", "admin", PASSWORD)
        admin_id = admin.id
        run_id = _run(s, tmp_path, state="queued")
    with session_scope(db) as s:
        user = s.get(User, admin_id)
        assert runs.cancel_run(s, run_id, user).state == "cancelled"
        assert runs.cancel_run(s, run_id, user).state == "cancelled"
