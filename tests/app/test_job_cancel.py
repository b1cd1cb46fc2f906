"""Cancel stops a job within seconds whatever the network size, and progress shows per step."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.app.job_helpers import kill_trainers, make_dataset, wait_for


@pytest.fixture
def no_stray_trainers(settings):
    yield
    kill_trainers(settings.runs_dir)


@pytest.mark.slow
def test_cancel_of_a_default_network_job_ends_within_15_s(live_app, admin, no_stray_trainers):
    """The default (paper-size) network at 16², batch 32: one minibatch takes a minute or more
    on this CPU, so a stop checked only between minibatches would wait that long."""
    ds = make_dataset(live_app.sessions, live_app.settings)
    body = {"dataset_id": ds, "resolution": 16, "kimg": 100, "preset": "auto"}
    job = admin.post("/api/jobs", json=body).json()
    assert job["options"]["cbase"] is None and job["options"]["batch"] == 32, job
    run = Path(job["run_dir"])
    log = run / "log.txt"
    wait_for(lambda: (run / "samples-000000.png").is_file(), what="training to start")
    time.sleep(3)  # inside the first (slow) minibatch
    asked = time.monotonic()
    r = admin.post(f"/api/jobs/{job['id']}/cancel")
    assert r.status_code == 202 and r.json()["waiting_for"], r.text
    page = admin.get(f"/jobs/{job['id']}")
    assert "Cancelling: waiting for the trainer" in page.text
    done = wait_for(
        lambda: (j := admin.get(f"/api/jobs/{job['id']}").json())["state"] != "cancelling" and j,
        timeout=60, what="the cancel", every=0.1,
    )  # fmt: skip
    took = time.monotonic() - asked
    print(f"cancel of the default network took {took:.1f} s")
    assert done["state"] == "cancelled", done
    assert took < 15, f"cancel took {took:.1f} s"
    text = log.read_text()
    assert "stop requested" in text and done["snapshots"]
    assert "tick 1" not in text  # it stopped inside the first minibatch, not after it


@pytest.mark.slow
def test_a_cpu_preset_job_shows_progress_per_step_within_a_minute(
    live_app, admin, no_stray_trainers
):
    ds = make_dataset(live_app.sessions, live_app.settings)
    body = {"dataset_id": ds, "resolution": 16, "kimg": 50, "preset": "cpu", "batch": 8}
    job = admin.post("/api/jobs", json=body).json()
    assert (job["options"]["cbase"], job["options"]["cmax"]) == (2048, 128)
    assert job["estimate_s"] and job["estimate_s"] > 0
    started = time.monotonic()
    step = wait_for(
        lambda: admin.get(f"/api/jobs/{job['id']}").json()["step"], timeout=120,
        what="per-step progress",
    )  # fmt: skip
    assert step["cur_nimg"] >= 8 and time.monotonic() - started < 60
    admin.post(f"/api/jobs/{job['id']}/cancel")
