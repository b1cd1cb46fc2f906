"""Metric runs when things go wrong: missing pretrained weights, an app restart, a crash,
a racing double start; and the small readers of the CLI's output."""

from __future__ import annotations

import json
import os
import re
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
def test_missing_inception_still_gives_c2st_and_ncc_memorisation(
    live_app, admin, tiny_run, tmp_path, monkeypatch, no_stray_runs
):
    home = tmp_path / "empty-torch-home"
    monkeypatch.setenv("TORCH_HOME", str(home))  # the default extractor, no weights there
    folder = os.path.join(str(home), "hub", "checkpoints")
    sid = metric_world(live_app, tiny_run).snapshot_id
    plan = admin.get(f"/api/snapshots/{sid}/metrics/plan").json()
    assert plan["metrics"]["fid"]["runnable"] is False and plan["cuda_available"] is False
    reason = plan["metrics"]["fid"]["reason"]
    assert WEIGHT_FILE in reason and folder in reason
    assert plan["metrics"]["c2st"]["runnable"] and plan["metrics"]["memorization"]["note"]
    form = admin.get(f"/snapshots/{sid}/metrics?part=form", headers={"HX-Request": "true"}).text
    assert re.search(r'value="fid"\s+disabled', form)
    assert "FID cannot run here" in form and WEIGHT_FILE in form and "fetch-weights" in form
    assert '<option value="cuda"' not in form  # no GPU here: not offered

    r = admin.post(f"/api/snapshots/{sid}/metrics", json={"metrics": ["fid"], "num": 8})
    assert r.status_code == 422 and WEIGHT_FILE in r.json()["detail"]  # nothing could run
    body = {"metrics": ["fid", "memorization", "c2st"], "num": 8, "c2st_epochs": 1}
    run = admin.post(f"/api/snapshots/{sid}/metrics", json=body).json()
    done = wait_run(admin, run["id"], timeout=120)
    assert done["state"] == "completed", done["error"]
    assert set(done["result"]["metrics"]) == {"memorization", "c2st"}
    assert WEIGHT_FILE in done["skipped"]["fid"] and done["errors"] == {}
    assert done["result"]["metrics"]["memorization"]["feature_extractor"] is None
    assert done["headline"]["c2st_accuracy"] is not None
    page = admin.get(f"/snapshots/{sid}").text
    assert "FID was not computed" in page and "pixel NCC only" in page
    assert "No metrics computed" not in page
    assert admin.post(f"/api/snapshots/{sid}/metrics", json={**body, "device": "cuda"}
                      ).status_code == 422  # fmt: skip


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
