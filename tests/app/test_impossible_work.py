"""Impossible work is refused at submission with a 422 naming what to lower (issue 21 item 5):
a job no device can hold or finish, a metric run or a utility run past the time budget."""

from __future__ import annotations

from dataclasses import replace

import pytest

from app.services.training.feasible import LARGEST_GPU_BYTES, min_memory_bytes
from app.settings import load_settings
from tests.app.job_helpers import make_dataset
from tests.app.metric_helpers import TINY_EXTRACTOR_MODULE
from tests.app.study_setup import add_world, tiny_run_fixture  # noqa: F401  (tiny_run)

# The attacker's largest combination of individually valid fields: 467 years by the estimate.
HUGE_NET = {"cbase": 65536, "cmax": 2048, "zdim": 2048, "batch": 4096, "kimg": 1_000_000}


@pytest.fixture
def settings(settings, request):
    """The tiny feature extractor for metric plans; a test may give MEDSYNTH_MAX_JOB_HOURS."""
    hours = getattr(request, "param", settings.max_job_hours)
    return replace(settings, metrics_extractor_module=TINY_EXTRACTOR_MODULE, max_job_hours=hours)


def test_the_budget_is_a_setting_with_a_sensible_default():
    env = {"MEDSYNTH_DATA": "/nonexistent", "MEDSYNTH_SECRET_KEY": "k"}
    assert 24 <= load_settings(env).max_job_hours <= 24 * 31
    assert load_settings({**env, "MEDSYNTH_MAX_JOB_HOURS": "2.5"}).max_job_hours == 2.5


def test_a_job_no_device_can_hold_is_refused_naming_the_batch(live_app, admin):
    ds = make_dataset(live_app.sessions, live_app.settings, res=256)
    body = {"dataset_id": ds, "resolution": 256, **HUGE_NET, "confirm_long": True}
    r = admin.post("/api/jobs", json=body)
    assert r.status_code == 422, r.text
    detail = r.json()["detail"]
    assert "batch: this network at this batch needs at least" in detail
    assert "lower the batch" in detail
    assert min_memory_bytes({"resolution": 256, **HUGE_NET, "gpus": 8}) > LARGEST_GPU_BYTES
    assert admin.get("/api/jobs").json() == []


def test_a_job_past_the_time_budget_is_refused_naming_the_setting(live_app, admin):
    ds = make_dataset(live_app.sessions, live_app.settings)
    small = {"dataset_id": ds, "resolution": 16, "batch": 4, "cbase": 256, "cmax": 32,
             "zdim": 32, "confirm_long": True}  # fmt: skip
    r = admin.post("/api/jobs", json={**small, "kimg": 1_000_000})
    assert r.status_code == 422, r.text
    detail = r.json()["detail"]
    assert "kimg: this job would take about" in detail
    assert "MEDSYNTH_MAX_JOB_HOURS" in detail and "lower kimg" in detail
    assert admin.get("/api/jobs").json() == []
    r = admin.post("/api/jobs", json={**small, "kimg": 0.1})  # the same network, a sane length
    assert r.status_code in (200, 201, 202), r.text


def test_ordinary_networks_are_not_refused_for_memory():
    paper_512 = {"resolution": 512, "cbase": 32768, "cmax": 512, "zdim": 512, "batch": 64}
    assert min_memory_bytes({**paper_512, "gpus": 8}) < 16 * 1024**3  # 8 images per GPU
    cpu_preset = {"resolution": 64, "cbase": 2048, "cmax": 128, "zdim": 128, "batch": 32}
    assert min_memory_bytes({**cpu_preset, "gpus": 0}) < 1024**3


@pytest.mark.parametrize("settings", [0.05], indirect=True)  # a budget of 3 minutes
def test_a_metric_run_past_the_time_budget_is_refused(live_app, admin, tiny_run):
    sid = add_world(live_app.sessions, live_app.settings.data_dir / "w", tiny_run).snapshot_id
    url = f"/api/snapshots/{sid}/metrics"
    r = admin.post(url, json={"metrics": ["c2st"], "num": 200_000, "device": "cpu"})
    assert r.status_code == 422, r.text
    detail = r.json()["detail"]
    assert "this metric run would take about" in detail
    assert "MEDSYNTH_MAX_JOB_HOURS" in detail and "lower num" in detail
    ok = admin.post(url, json={"metrics": ["c2st"], "num": 24, "device": "cpu"})
    assert ok.status_code == 202, ok.text
    admin.post(f"/api/metric-runs/{ok.json()['id']}/cancel")


def test_the_attackers_utility_run_is_refused(live_app, admin, tiny_run):
    world = add_world(live_app.sessions, live_app.settings.data_dir / "w", tiny_run,
                      other_patients=True)  # fmt: skip
    arms = ",".join(["real", "syn", *(f"real+syn:{k}" for k in range(1, 201))])
    fractions = ",".join(f"{k / 20:g}" for k in range(1, 20))
    body = {"test_dataset_id": world.holdout_id, "arms": arms, "fractions": fractions,
            "seeds": 20, "steps": 100_000}  # fmt: skip
    r = admin.post(f"/api/snapshots/{world.snapshot_id}/utility", json=body)
    assert r.status_code == 422, r.text
    detail = r.json()["detail"]
    assert "7,676,000,000 training steps" in detail  # 202 × 19 × 20 × 100 000
    assert "MEDSYNTH_MAX_JOB_HOURS" in detail and "lower the arms, fractions, seeds or steps" in (
        detail
    )
