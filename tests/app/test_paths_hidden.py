"""Reviewers never see server paths or process ids (issue 21 item 7): a metric run's JSON, a
snapshot's metrics, the snapshot page and the metric plan show them to admins only."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.db import session_scope
from app.models import MetricRun, utcnow
from tests.app.study_setup import add_world, tiny_run_fixture  # noqa: F401  (tiny_run)

MISSING = "weights-inception-2015-12-05-6726825d.pth"


def _run(live_app, world, torch_home: Path) -> tuple[int, list[str]]:
    """A completed run as the monitor stores it: the trainer's result names its snapshot and
    data files, the run folder and the weights folder. Returns its id and those paths."""
    snapshot, data = (
        str(live_app.settings.runs_dir / "1" / "snapshot-000000.pt"),
        str(live_app.settings.datasets_dir / "dataset-1.zip"),
    )
    run_dir = str(live_app.settings.runs_dir / "1" / "metrics" / "1")
    weights = str(torch_home / "hub" / "checkpoints")
    result = {
        "snapshot": snapshot, "data": data, "kimg": 0, "metrics": {"c2st": {"accuracy": 0.5}},
        "options": {"num": 16, "device": "cpu", "metrics": ["c2st", "fid"]},
        "skipped": {"fid": f"needs {MISSING} (missing) in {weights}"},
        "errors": {}, "timings": {"total_s": 2.0}, "estimate_s": 3.0, "notes": [],
        "environment": {"torch": "2", "device": "cpu", "weights": {MISSING: None}},
    }  # fmt: skip
    with session_scope(live_app.sessions) as session:
        run = MetricRun(snapshot_id=world.snapshot_id, state="completed", metrics=["c2st", "fid"],
                        request_key="k", options={"num": 16, "data": data, "snapshot": snapshot},
                        run_dir=run_dir, pid=4242, result=result, finished_at=utcnow(),
                        error=f"fid skipped: weights missing in {weights}")  # fmt: skip
        session.add(run)
        session.flush()
        return run.id, [snapshot, data, run_dir, weights, str(live_app.settings.data_dir)]


def _shows(text: str, paths: list[str]) -> list[str]:
    return [p for p in paths if p in text]


@pytest.mark.slow  # the plan asks the real trainer (`python -m trainer metrics plan`)
def test_reviewers_see_no_server_path_or_pid(live_app, admin, reader, tiny_run, monkeypatch,
                                             tmp_path):  # fmt: skip
    torch_home = tmp_path / "torch-home"  # no weights there: the plan says where they go
    monkeypatch.setenv("TORCH_HOME", str(torch_home))
    world = add_world(live_app.sessions, live_app.settings.data_dir / "fx", tiny_run)
    run_id, paths = _run(live_app, world, torch_home)
    sid = world.snapshot_id
    htmx = {"HX-Request": "true"}
    urls = [f"/api/metric-runs/{run_id}", f"/api/snapshots/{sid}/metrics",
            f"/api/snapshots/{sid}/metrics/plan", f"/snapshots/{sid}",
            f"/snapshots/{sid}/metrics?part=form"]  # fmt: skip
    for url in urls:
        mine = reader.get(url, headers=htmx if "part=" in url else {})
        theirs = admin.get(url, headers=htmx if "part=" in url else {})
        assert mine.status_code == theirs.status_code == 200, (url, mine.text[:200])
        assert _shows(mine.text, paths) == [], url
        assert str(torch_home) not in mine.text and "4242" not in mine.text, url
        if url != f"/snapshots/{sid}/metrics?part=form":  # the form itself is for admins
            assert _shows(theirs.text, paths) or str(torch_home) in theirs.text, url
    run = reader.get(f"/api/metric-runs/{run_id}").json()
    assert run["pid"] is None and run["run_dir"] is None and run["options"]["data"] is None
    assert run["result"]["skipped"]["fid"].startswith(f"needs {MISSING} (missing) in ")
    assert admin.get(f"/api/metric-runs/{run_id}").json()["pid"] == 4242
    plan = reader.get(f"/api/snapshots/{sid}/metrics/plan").json()
    assert MISSING in plan["metrics"]["fid"]["reason"]  # the file is named, not its folder
    page = admin.get(f"/snapshots/{sid}").text
    assert f"{paths[2]}/result.json" in page
    assert "result.json" not in reader.get(f"/snapshots/{sid}").text
