"""The app's side of the metric plan: estimates for any choice from the trainer's measured
stages, calibration on this machine's history, and a fresh plan once weights are copied in."""

from __future__ import annotations

from types import SimpleNamespace

from app.db import session_scope
from app.models import MetricRun
from app.services.evaluation import metric_plan
from app.services.evaluation.metric_plan import MetricPlan, calibration
from tests.app.study_setup import add_world, tiny_run_fixture  # noqa: F401  (tiny_run)

PLAN = {
    "device": "cpu", "cuda_available": False, "suggested_num": 500,
    "metrics": {"fid": {"runnable": False, "reason": "needs weights-inception…", "note": None},
                "c2st": {"runnable": True, "reason": None, "note": None},
                "memorization": {"runnable": True, "reason": None, "note": "pixel NCC only"}},
    "stage_users": {"generate": ["fid", "memorization", "c2st"], "features": ["fid"],
                    "memorization": ["memorization"], "c2st": ["c2st"]},
    "estimates": {"100": {"total_s": 12, "parts": {"generate": 1, "memorization": 1, "c2st": 10}},
                  "1000": {"total_s": 30, "parts": {"generate": 10, "memorization": 10,
                                                    "c2st": 10}}},
}  # fmt: skip


def test_estimates_add_the_stages_a_choice_needs_and_interpolate():
    plan = MetricPlan(PLAN)
    assert plan.estimate(["c2st"], 100) == 11  # generation + C2ST
    assert plan.estimate(["c2st", "memorization", "fid"], 1000) == 30  # fid cannot run
    assert plan.estimate(["memorization"], 550) == 11  # halfway between 2 and 20
    assert plan.estimate(["memorization"], 2000) == 40  # beyond the ladder: linear
    assert MetricPlan(PLAN, factor=2.0).estimate(["c2st"], 100) == 22
    assert not plan.cuda and not plan.runnable("fid") and plan.note("memorization")
    assert MetricPlan(None, "no answer").estimate(["c2st"], 100) is None


def test_calibration_is_the_median_ratio_of_real_to_estimated_time(db, settings, tiny_run):
    sid = add_world(db, settings.data_dir / "fx", tiny_run).snapshot_id
    with session_scope(db) as session:
        assert calibration(session, "cpu") == (1.0, 0)
        for est, real in ((3, 30), (10, 20), (10, 10)):  # the C2ST case of the issue first
            session.add(MetricRun(snapshot_id=sid, state="completed", metrics=["c2st"],
                                  request_key=f"k{est}{real}", options={},
                                  result={"estimate_s": est, "timings": {"total_s": real},
                                          "options": {"device": "cpu"}}))  # fmt: skip
    with session_scope(db) as session:
        assert calibration(session, "cpu") == (2.0, 3)
        assert calibration(session, "cuda") == (1.0, 0)


def test_a_plan_is_asked_again_once_weights_are_copied_in(settings, tmp_path, monkeypatch):
    folder = tmp_path / "checkpoints"
    folder.mkdir()
    asked = []

    def ask(settings, snapshot, data):
        asked.append(snapshot)
        return {**PLAN, "weights_folder": str(folder)}

    monkeypatch.setattr(metric_plan, "_ask", ask)
    monkeypatch.setattr(metric_plan, "calibration", lambda session, device: (1.0, 0))
    snap_file = tmp_path / "s.pt"
    snap_file.write_bytes(b"x")
    snap = SimpleNamespace(path=str(snap_file))
    metric_plan.plan_for(None, settings, snap, tmp_path / "d.zip")
    metric_plan.plan_for(None, settings, snap, tmp_path / "d.zip")
    assert len(asked) == 1  # cached
    (folder / "weights-inception-2015-12-05-6726825d.pth").write_bytes(b"w")
    metric_plan.plan_for(None, settings, snap, tmp_path / "d.zip")
    assert len(asked) == 2
