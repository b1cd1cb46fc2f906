"""The job form as a Pydantic model: every number bounded by what the trainer can run."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from app.db import session_scope
from app.schemas.jobs import BOUNDS, parse_job_options
from app.services.training import estimate
from app.services.training.job_options import JobOptionsInvalid, validate_job_options
from app.trainer_client import commands
from app.trainer_client.processes import Devices
from tests.app.job_helpers import TINY, make_dataset

ROOT = Path(__file__).resolve().parents[2]
TRAINER_NAMES = {"resolution": "res"}


def test_the_models_bounds_are_the_trainers_limits():
    out = subprocess.run([*commands.info_argv(sys.executable, "defaults", "--res", "64")],
                         cwd=ROOT, capture_output=True, text=True, timeout=120)  # fmt: skip
    limits = json.loads(out.stdout)["limits"]
    for field, (lo, hi, _) in BOUNDS.items():
        name = TRAINER_NAMES.get(field, field)
        if name in limits:
            t_lo, t_hi = limits[name]
            assert hi <= t_hi and lo >= t_lo - 1e-9, (field, (lo, hi), (t_lo, t_hi))


@pytest.mark.parametrize(
    ("field", "value"),
    [("zdim", 1e9), ("zdim", 10**9), ("cbase", 10**7), ("cmax", 100_000), ("kimg", 1e12),
     ("batch", 10**6), ("gamma", 1e30), ("tick", 1e9), ("seed", 2**40), ("snap", 10**9),
     ("metrics_every", -1), ("keep_snapshots", 0), ("gamma", float("nan"))],
)  # fmt: skip
def test_numbers_the_trainer_cannot_run_are_refused(field, value):
    model, errors = parse_job_options({field: value})
    assert model is None and field in errors, errors


def test_the_form_strings_parse_and_blank_means_default():
    model, errors = parse_job_options({"kimg": "2.5", "zdim": "", "cond": "on", "batch": "8",
                                       "augpipe": "bg", "csrf_token": "x"})  # fmt: skip
    assert not errors and model.kimg == 2.5 and model.zdim is None and model.cond
    assert model.batch == 8 and model.augpipe == "bg"
    _, errors = parse_job_options({"augpipe": "bgcx", "batch": True})
    assert "augpipe" in errors and "true/false" in errors["batch"]


def test_augpipe_defaults_to_bgc_and_reaches_the_trainer(db, settings):
    ds = make_dataset(db, settings)
    with session_scope(db) as session:
        _, opts = validate_job_options(session, {"dataset_id": ds, **TINY}, Devices())
        assert opts["augpipe"] == "bgc" and opts["keep_snapshots"] == 5
        _, opts = validate_job_options(session, {"dataset_id": ds, **TINY, "augpipe": "bgcfnc"},
                                       Devices())  # fmt: skip
    argv = commands.train_argv("py", opts, "/runs/1", 1.0, None)
    assert argv[argv.index("--augpipe") + 1] == "bgcfnc"


def test_precision_reaches_the_trainer_and_default_leaves_it_to_the_trainer(db, settings):
    ds = make_dataset(db, settings)
    argvs = {}
    with session_scope(db) as session:
        for precision in ("", "fp32", "bf16"):
            _, opts = validate_job_options(
                session, {"dataset_id": ds, **TINY, "precision": precision}, Devices()
            )
            argvs[precision] = commands.train_argv("py", opts, "/runs/1", 1.0, None)
    assert "--bf16" not in argvs[""] and "--no-bf16" not in argvs[""]  # CPU: fp32, GPU: bf16
    assert "--no-bf16" in argvs["fp32"] and "--bf16" in argvs["bf16"]
    assert "--bf16" not in commands.train_argv("py", opts, "/runs/1", 2.0, "latest")
    _, errors = parse_job_options({"precision": "fp16"})
    assert "precision" in errors


def test_the_estimate_knows_cpu_bf16_pays_only_with_amx(db, settings):
    from trainer.info import cpu_bf16_units

    ds = make_dataset(db, settings, res=64)
    with session_scope(db) as session:
        _, fp32 = validate_job_options(session, {"dataset_id": ds}, Devices())
        _, bf16 = validate_job_options(session, {"dataset_id": ds, "precision": "bf16"}, Devices())
        fast, slow = estimate.seconds(session, bf16), estimate.seconds(session, fp32)
    if cpu_bf16_units() == "amx":
        assert 1.8 * fast < slow  # 2.4x on the conv work, minus the per-step overhead
    else:
        assert fast >= slow


def test_the_cpu_preset_gives_small_channels_and_a_shorter_estimate(db, settings):
    ds = make_dataset(db, settings, res=64)
    with session_scope(db) as session:
        _, cpu = validate_job_options(session, {"dataset_id": ds, "preset": "cpu"}, Devices())
        _, paper = validate_job_options(session, {"dataset_id": ds}, Devices())
        assert (cpu["cbase"], cpu["cmax"], cpu["zdim"]) == (2048, 128, 128)
        assert paper["cbase"] is None
        fast, slow = estimate.seconds(session, cpu), estimate.seconds(session, paper)
        assert fast * 10 < slow
        # the bench's 1770 s/kimg at 64² on 2 threads (batch 8, auto network): within 2x
        per_kimg = estimate.sec_per_kimg(session, {**paper, "batch": 8})
        assert 1770 / 2 < per_kimg * (estimate.CPU_MACS_PER_S / 70e9) < 1770 * 2
        with pytest.raises(JobOptionsInvalid):
            validate_job_options(session, {"dataset_id": ds, "preset": "gpu"}, Devices())


def test_the_api_documents_the_job_models(live_app, admin):
    doc = admin.get("/openapi.json").json()
    body = doc["paths"]["/api/jobs"]["post"]["requestBody"]["content"]["application/json"]
    zdim = json.dumps(body["schema"]["properties"]["zdim"])
    assert f'"maximum": {BOUNDS["zdim"][1]}' in zdim
    assert "JobOut" in json.dumps(doc["paths"]["/api/jobs/{job_id}"]["get"]["responses"])
    ds = make_dataset(live_app.sessions, live_app.settings)
    r = admin.post("/api/jobs", json={"dataset_id": ds, **TINY, "zdim": 10**9})
    assert r.status_code == 422 and "zdim" in r.json()["detail"]
    est = admin.post("/api/jobs/estimate", json={"dataset_id": ds, **TINY, "kimg": 1})
    assert est.status_code == 200 and est.json()["ok"] and est.json()["seconds"] > 0


def test_the_estimate_learns_from_jobs_that_ran_here(db, settings):
    from app.models import Job

    ds = make_dataset(db, settings)
    with session_scope(db) as session:
        _, opts = validate_job_options(session, {"dataset_id": ds, **TINY}, Devices())
        before = estimate.sec_per_kimg(session, opts)
        session.add(Job(dataset_id=ds, state="completed", options=opts, run_dir="/x",
                        resolution=16, total_kimg=1, device="cpu",
                        sec_per_kimg=3 * before))  # fmt: skip
        session.commit()
        assert estimate.sec_per_kimg(session, opts) == pytest.approx(3 * before)


def test_the_estimate_says_whether_earlier_jobs_calibrated_it(db, settings):
    """Before any job ran on this kind of device the estimate is labelled a first guess; a
    finished job's measured sec/kimg then scales later estimates."""
    from app.models import Job

    ds_id = make_dataset(db, settings, n=8)
    raw = {"dataset_id": ds_id, "resolution": 16, "kimg": 1, "batch": 8, "preset": "cpu"}
    devices = Devices(gpus=0)
    with session_scope(db) as s:
        first = estimate.for_form(s, raw, devices)
        assert first["ok"] and first["calibrated_on"] == 0, first
        _, opts = validate_job_options(s, raw, devices)
        base = estimate.sec_per_kimg(s, opts)
        s.add(Job(dataset_id=ds_id, resolution=16, total_kimg=1.0, state="completed",
                  options=opts, device="cpu", sec_per_kimg=3 * base))  # fmt: skip
        s.commit()
        later = estimate.for_form(s, raw, devices)
    assert later["calibrated_on"] == 1
    assert abs(later["sec_per_kimg"] - 3 * base) < 1e-6 * base
