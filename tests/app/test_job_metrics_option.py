"""The job form's "FID/KID every N snapshots": validated, passed to the trainer, charted."""

from __future__ import annotations

import pytest

from app.db import session_scope
from app.models import Job
from app.presentation import charts
from app.services.training.job_options import Devices, JobOptionsInvalid, validate_job_options
from app.trainer_client import commands
from tests.app.job_helpers import TINY, make_dataset


def test_metrics_every_defaults_to_off_and_must_not_be_negative(db, settings):
    ds = make_dataset(db, settings)
    with session_scope(db) as session:
        _, opts = validate_job_options(session, {"dataset_id": ds, **TINY}, Devices())
        assert opts["metrics_every"] == 0
        with pytest.raises(JobOptionsInvalid) as err:
            validate_job_options(session, {"dataset_id": ds, "metrics_every": "-1"}, Devices())
    assert "between 0" in err.value.errors["metrics_every"]


def test_a_job_with_metrics_every_passes_the_flag_to_the_trainer(db, settings):
    ds = make_dataset(db, settings)
    with session_scope(db) as session:
        raw = {"dataset_id": ds, **TINY, "metrics_every": "1"}
        _, opts = validate_job_options(session, raw, Devices())
    job = Job(options=opts, run_dir="/runs/9", total_kimg=2.0)
    fresh = commands.train_argv("py", job.options, job.run_dir, 2.0, None)
    assert fresh[-4:] == ["--metrics-every", "1", "--device", "cpu"]
    assert commands.train_argv("py", job.options, job.run_dir, 2.0, "latest")[-4:-2] == [
        "--metrics-every",
        "1",
    ]
    job.options = {**opts, "metrics_every": 0}
    assert "--metrics-every" not in commands.train_argv("py", job.options, job.run_dir, 2.0, None)


def test_the_fid_chart_reads_the_trainers_stats_line():
    row = {"tick": 2, "kimg": 0.064, "loss_G": 1.0, "fid": 41.5, "fid_relative": 3.2,
           "kid_mean": 0.02, "kid_std": 0.001, "metrics_seconds": 12.0}  # fmt: skip
    assert charts.fid_series([{"tick": 1, "kimg": 0.032, "loss_G": 1.1}, row]) == [(0.064, 41.5)]


def test_the_form_offers_the_field_with_its_cpu_note_and_error(live_app, admin):
    ds = make_dataset(live_app.sessions, live_app.settings)
    page = admin.get("/jobs")
    assert 'name="metrics_every"' in page.text and "slow on the CPU" in page.text
    form = {"dataset_id": str(ds), **{k: str(v) for k, v in TINY.items()}, "metrics_every": "-2"}
    r = admin.post("/jobs", data=form, headers={"HX-Request": "true"})
    assert r.status_code == 200 and 'id="err-metrics_every"' in r.text
