"""Metric runs when things go wrong: missing pretrained weights, an app restart, a crash,
a racing double start; and the small readers of the CLI's output."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import timedelta

import pytest
from sqlalchemy.exc import IntegrityError

from app.db import session_scope
from app.errors import InvalidInput
from app.models import MetricRun, utcnow
from app.services.evaluation.metric_monitor import MetricRunFollower, cli_error, merge_progress
from app.services.evaluation.metric_runs import validate_request
from app.services.training.job_monitor import JobMonitor
from app.trainer_client.processes import Devices
from tests.app.job_helpers import kill_trainers
from tests.app.metric_helpers import metric_world, wait_run
from tests.app.study_setup import add_world, tiny_run_fixture  # noqa: F401  (tiny_run)

WEIGHT_FILE, WEIGHT_HASH = "weights-inception-2015-12-05-6726825d.pth", "SHA-256 6726825d"


@pytest.fixture
def no_stray_runs(settings):
    yield
    kill_trainers(settings.runs_dir)


@pytest.mark.slow
def test_missing_weights_fail_the_run_with_file_folder_and_hash(
    live_app, admin, tiny_run, tmp_path, monkeypatch, no_stray_runs
):
    home = tmp_path / "empty-torch-home"
    monkeypatch.setenv("TORCH_HOME", str(home))  # the default extractor, no weights there
    sid = metric_world(live_app, tiny_run).snapshot_id
    run = admin.post(f"/api/snapshots/{sid}/metrics", json={"metrics": ["fid"], "num": 8}).json()
    done = wait_run(admin, run["id"], timeout=60)
    assert done["state"] == "failed" and done["exit_code"] == 3
    folder = os.path.join(str(home), "hub", "checkpoints")
    for words in (WEIGHT_FILE, WEIGHT_HASH, f"put it in {folder}/", "fetch-weights"):
        assert words in done["error"], done["error"]
    assert not done["error"].startswith("error:") and "Traceback" not in done["error"]
    page = admin.get(f"/snapshots/{sid}").text
    assert f"put it in {folder}/" in page and WEIGHT_HASH in page
    listing = admin.get(f"/api/snapshots/{sid}/metrics").json()
    assert listing["latest"] is None and listing["runs"][0]["error"] == done["error"]


def _row(db, sid: int, run_dir, **kw) -> int:
    with session_scope(db) as session:
        run = MetricRun(snapshot_id=sid, metrics=["fid"], options={"num": 8, "device": "cpu"},
                        request_key=f"restart-{run_dir.name}", run_dir=str(run_dir),
                        **kw)  # fmt: skip
        session.add(run)
        session.flush()
        return run.id


def _state(db, run_id: int) -> MetricRun:
    with session_scope(db) as session:
        return session.get(MetricRun, run_id)


def _snapshot(db, settings, tiny_run) -> int:
    return add_world(db, settings.data_dir / "fixtures", tiny_run).snapshot_id


def test_after_a_restart_runs_are_reattached_or_closed(db, settings, tiny_run, no_stray_runs):
    sid = _snapshot(db, settings, tiny_run)
    folders = [settings.runs_dir / "restart" / str(i) for i in range(4)]
    for f in folders:
        f.mkdir(parents=True)
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    alive = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", "trainer",
                              str(folders[2])], start_new_session=True)  # fmt: skip
    (folders[3] / "result.json").write_text(json.dumps({"metrics": {"fid": {"value": 3.5}}}))
    started = utcnow() - timedelta(minutes=5)
    dead = _row(db, sid, folders[0], state="running", pid=gone.pid, started_at=started)
    never = _row(db, sid, folders[1], state="running", pid=None, started_at=started)
    live = _row(db, sid, folders[2], state="running", pid=alive.pid, started_at=started)
    wrote = _row(db, sid, folders[3], state="running", pid=gone.pid, started_at=started)
    try:
        follower = MetricRunFollower(settings)
        monitor = JobMonitor(settings, db, devices=Devices(), followers=[follower])
        monitor.run_once(start=False)  # what a freshly started app does first
        for run_id in (dead, never):
            run = _state(db, run_id)
            assert run.state == "failed" and run.error.startswith("interrupted") and run.finished_at
        assert _state(db, live).state == "running"  # not ours to reap, but alive: followed
        run = _state(db, wrote)
        assert run.state == "completed" and run.result["metrics"]["fid"]["value"] == 3.5
    finally:
        alive.kill()
        alive.wait()
    monitor.run_once(start=False)
    assert _state(db, live).state == "failed"


def test_a_crash_keeps_the_clis_last_words(tmp_path):
    (tmp_path / "progress.log").write_text(
        '{"message": "estimate on cpu: about 5 min"}\n{"stage": "generate", "done": 16, '
        '"total": 64, "elapsed_s": 1.0, "eta_s": 3.0}\nTraceback (most recent call last):\n'
        '  File "x.py", line 1\nerror: RuntimeError: out of memory\n'
    )
    assert cli_error(tmp_path) == "RuntimeError: out of memory"
    rows = [{"message": "estimate on cpu: about 5 min"}, {"message": "fidelity ..."},
            {"stage": "generate", "done": 16, "total": 64, "eta_s": 3.0}]  # fmt: skip
    merged = merge_progress(None, rows)
    assert merged["estimate"] == "estimate on cpu: about 5 min" and merged["done"] == 16
    assert merged["message"] == "fidelity ..."


def test_one_active_run_per_request_even_when_two_starts_race(db, settings, tiny_run):
    sid = _snapshot(db, settings, tiny_run)
    with session_scope(db) as session:
        session.add(MetricRun(snapshot_id=sid, metrics=["kid"], request_key="same"))
    with pytest.raises(IntegrityError), session_scope(db) as session:
        session.add(MetricRun(snapshot_id=sid, metrics=["kid"], request_key="same"))
    with session_scope(db) as session:  # a finished run frees the key
        session.query(MetricRun).update({"state": "completed"})
        session.add(MetricRun(snapshot_id=sid, metrics=["kid"], request_key="same"))


@pytest.mark.parametrize(
    "raw, words",
    [({"metrics": "fid,memorisation"}, None), ({"metrics": ["fid"], "trunc": 3}, "trunc"),
     ({"metrics": ["fid"], "num": 2.5}, "whole number"), ({"metrics": 7}, "list of metric")],
)  # fmt: skip
def test_requests_are_validated_before_anything_is_queued(raw, words):
    if words is None:
        metrics, opts = validate_request(raw)
        assert metrics == ["fid", "memorization"] and opts == {"num": 10000, "device": "auto"}
        return
    with pytest.raises(InvalidInput, match=words):
        validate_request(raw)
