"""Each metric runs and reports on its own: missing weights skip only the metrics that need
them (memorisation falls back to pixel NCC), a failing stage does not take the others down,
and `metrics plan` says what can run here and how long it would take."""

from __future__ import annotations

import importlib
import json

import pytest

from tests.trainer.metrics_support import smooth_images, tiny_generator, write_snapshot, write_zip
from trainer.metrics import compute_metrics, main
from trainer.metrics.estimate import c2st_steps

evaluate_module = importlib.import_module("trainer.metrics.evaluate")  # not the function


@pytest.fixture
def files(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty-torch-home"))  # no weights at all
    data = write_zip(tmp_path / "d.zip", smooth_images(12))
    snap = write_snapshot(tmp_path / "s.pt", tiny_generator())
    return snap, data


def test_missing_inception_still_gives_c2st_and_ncc_memorisation(files):
    snap, data = files
    out = compute_metrics(snap, data, metrics=("fid", "memorization", "c2st"), num=12,
                          c2st_epochs=1, estimate=False)  # fmt: skip
    assert set(out["metrics"]) == {"memorization", "c2st"}
    assert "weights-inception" in out["skipped"]["fid"] and out["errors"] == {}
    mem = out["metrics"]["memorization"]
    assert mem["feature_extractor"] is None and mem["num_generated"] == 12
    assert "feature_distance" not in mem["per_sample"]
    assert any("pixel NCC only" in n for n in out["notes"])
    assert 0 <= out["metrics"]["c2st"]["accuracy"] <= 1


def test_a_failing_stage_is_reported_and_the_others_still_run(files, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("out of memory")

    monkeypatch.setattr(evaluate_module, "c2st", broken)
    snap, data = files
    out = compute_metrics(snap, data, metrics=("memorization", "c2st"), num=8, estimate=False)
    assert list(out["metrics"]) == ["memorization"]
    assert out["errors"] == {"c2st": "RuntimeError: out of memory"}


def test_cli_exits_0_when_some_metrics_ran_and_1_when_none_did(files, capsys, monkeypatch):
    snap, data = files
    args = ["--snapshot", snap, "--data", data, "--num", "8", "--c2st-epochs", "1",
            "--no-estimate"]  # fmt: skip
    assert main([*args, "--metrics", "fid,c2st"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert list(out["metrics"]) == ["c2st"] and list(out["skipped"]) == ["fid"]
    monkeypatch.setattr(evaluate_module, "c2st", lambda *a, **k: 1 / 0)
    assert main([*args, "--metrics", "c2st"]) == 1
    assert "c2st: ZeroDivisionError" in capsys.readouterr().err


def test_plan_says_what_can_run_and_how_long(files, capsys):
    snap, data = files
    assert main(["plan", "--snapshot", snap, "--data", data, "--device", "cpu",
                 "--budget-s", "60"]) == 0  # fmt: skip
    plan = json.loads(capsys.readouterr().out)
    assert plan["device"] == "cpu" and isinstance(plan["cuda_available"], bool)
    assert plan["metrics"]["fid"]["runnable"] is False
    assert "weights-inception" in plan["metrics"]["fid"]["reason"]
    assert plan["metrics"]["memorization"] == {
        "runnable": True, "reason": None,
        "note": "pixel NCC only: the Inception weights are missing"}  # fmt: skip
    assert plan["metrics"]["c2st"]["runnable"] and plan["estimates"]["1000"]["parts"]["c2st"] > 0
    fits = plan["estimates"][str(plan["suggested_num"])]["total_s"]
    assert fits <= 60 or plan["suggested_num"] == 50


def test_c2st_is_estimated_in_steps_not_images():
    # 28 images per side: 44 train per fold, 2 batches per epoch, at least 200 steps per fold
    assert c2st_steps(28, folds=5, epochs=15) == 5 * 100 * 2
    assert c2st_steps(5000, folds=5, epochs=15) == 5 * 15 * 250
