"""Reviewers never see server paths or process ids (issue 21 item 7): a metric run's JSON, a
snapshot's metrics, the snapshot page and the metric plan show them to admins only."""

from __future__ import annotations

import pytest

from tests.app.job_helpers import kill_trainers
from tests.app.metric_helpers import metric_world, wait_run
from tests.app.study_setup import tiny_run_fixture  # noqa: F401  (provides tiny_run)

MISSING = "weights-inception-2015-12-05-6726825d.pth"


@pytest.fixture
def no_stray_runs(settings):
    yield
    kill_trainers(settings.runs_dir)


@pytest.mark.slow  # a real metric run and plan of the real trainer
def test_reviewers_see_no_server_path_or_pid(
    live_app, admin, reader, tiny_run, monkeypatch, tmp_path, no_stray_runs
):
    torch_home = tmp_path / "torch-home"  # no weights there: FID is skipped, naming the folder
    monkeypatch.setenv("TORCH_HOME", str(torch_home))
    sid = metric_world(live_app, tiny_run).snapshot_id
    body = {"metrics": ["fid", "c2st"], "num": 8, "c2st_epochs": 1}
    started = admin.post(f"/api/snapshots/{sid}/metrics", json=body)
    assert started.status_code == 202, started.text
    run = wait_run(admin, started.json()["id"], timeout=600)
    assert run["state"] == "completed", run["error"]
    result = run["result"]
    paths = [run["run_dir"], result["snapshot"], result["data"], str(torch_home),
             str(live_app.settings.data_dir)]  # fmt: skip
    assert all(p.startswith("/") for p in paths) and run["pid"], run
    assert str(torch_home) in result["skipped"]["fid"]  # what the trainer wrote
    htmx = {"HX-Request": "true"}
    urls = [f"/api/metric-runs/{run['id']}", f"/api/snapshots/{sid}/metrics",
            f"/api/snapshots/{sid}/metrics/plan", f"/snapshots/{sid}",
            f"/snapshots/{sid}/metrics?part=form"]  # fmt: skip
    for url in urls:
        mine = reader.get(url, headers=htmx if "part=" in url else {})
        theirs = admin.get(url, headers=htmx if "part=" in url else {})
        assert mine.status_code == theirs.status_code == 200, (url, mine.text[:200])
        assert [p for p in paths if p in mine.text] == [], url
        assert f'"pid":{run["pid"]}' not in mine.text.replace(" ", ""), url
        if "part=" not in url:  # the start form itself is for admins
            assert any(p in theirs.text for p in paths), url
    seen = reader.get(f"/api/metric-runs/{run['id']}").json()
    assert seen["pid"] is None and seen["run_dir"] is None and seen["result"]["data"] is None
    assert seen["result"]["skipped"]["fid"].startswith(f"needs {MISSING}")  # the file, no folder
    assert seen["headline"] == run["headline"]  # the numbers are the same
    plan = reader.get(f"/api/snapshots/{sid}/metrics/plan").json()
    assert MISSING in plan["metrics"]["fid"]["reason"]
    assert f"{run['run_dir']}/result.json" in admin.get(f"/snapshots/{sid}").text
    assert "result.json" not in reader.get(f"/snapshots/{sid}").text
