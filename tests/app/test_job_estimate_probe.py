"""Estimates that hold on the first try: the trainer measures the job's own network on this
machine (`trainer info speed`, a real process), the app keeps it per network and device, an
empty length is an error, and a job over a day needs a confirmation."""

from __future__ import annotations

import json
import math
import subprocess
import sys

from sqlalchemy import select

from app.db import session_scope
from app.models import Job, SpeedProbe
from app.trainer_client.commands import ROOT
from tests.app.job_helpers import TINY, kill_trainers, make_dataset

FLAGS = ["--res", "16", "--batch", "4", "--cbase", "64", "--cmax", "16", "--zdim", "32",
         "--aug", "ada", "--device", "cpu"]  # fmt: skip


def _info(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "trainer", "info", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=600)  # fmt: skip


def test_trainer_measures_the_network_a_job_would_build():
    out = _info("speed", *FLAGS)
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout.splitlines()[-1])
    assert doc["device"] == "cpu" and doc["batch"] == 4 and doc["res"] == 16
    assert 0 < doc["sec_per_kimg"] < 1e5 and doc["probe_s"] > 0
    bad = _info("speed", "--batch", "4")
    assert bad.returncode == 2 and "needs --res" in bad.stderr
    assert _info("defaults", "--res", "16", "--bogus").returncode == 2  # other questions: strict


def test_the_estimate_is_measured_once_per_network_and_then_used(live_app, admin):
    ds = make_dataset(live_app.sessions, live_app.settings)
    body = {"dataset_id": ds, **TINY, "kimg": 1}
    first = admin.post("/api/jobs/estimate", json=body).json()
    assert first["ok"] and first["measured"] is False  # a guess, and it says so
    measured = admin.post("/api/jobs/estimate", json={**body, "measure": True}).json()
    assert measured["ok"] and measured["measured"] is True, measured
    with session_scope(live_app.sessions) as s:
        probes = s.scalars(select(SpeedProbe)).all()
        assert len(probes) == 1 and probes[0].device == "cpu"
        assert "--cbase 64" in probes[0].key and "--kimg" not in probes[0].key
        value = probes[0].sec_per_kimg
    assert measured["sec_per_kimg"] == value
    longer = admin.post("/api/jobs/estimate", json={**body, "kimg": 2}).json()  # same network
    assert longer["measured"] and longer["sec_per_kimg"] == value
    assert math.isclose(longer["seconds"] - measured["seconds"], value, rel_tol=1e-6)
    other = admin.post("/api/jobs/estimate", json={**body, "cbase": 128}).json()
    assert other["measured"] is False  # another network is another measurement
    page = admin.post("/jobs/estimate", data={k: str(v) for k, v in body.items()})
    assert "Measured on this machine" in page.text and "Measuring" not in page.text


def test_an_empty_length_is_an_error_not_1000_kimg(live_app, admin):
    ds = make_dataset(live_app.sessions, live_app.settings)
    body = {k: v for k, v in TINY.items()}
    r = admin.post("/api/jobs", json={"dataset_id": ds, **body})
    assert r.status_code == 422 and "kimg: say how long" in r.json()["detail"]
    form = {"dataset_id": str(ds), **{k: str(v) for k, v in body.items()}, "kimg": ""}
    page = admin.post("/jobs", data=form)
    assert page.status_code == 422 and 'id="err-kimg"' in page.text
    with session_scope(live_app.sessions) as s:
        assert s.scalars(select(Job)).all() == []
    empty_form = admin.get("/jobs").text
    assert 'name="kimg" type="number" value=""' in empty_form


def test_a_job_over_a_day_asks_for_confirmation(live_app, admin):
    ds = make_dataset(live_app.sessions, live_app.settings)
    base = {"dataset_id": ds, **TINY}
    per_kimg = admin.post("/api/jobs/estimate", json={**base, "kimg": 1}).json()["sec_per_kimg"]
    kimg = math.ceil(2 * 86400 / per_kimg)  # about two days here
    est = admin.post("/api/jobs/estimate", json={**base, "kimg": kimg}).json()
    assert est["over_a_day"] is True
    r = admin.post("/api/jobs", json={**base, "kimg": kimg})
    assert r.status_code == 422 and "confirm_long" in r.json()["detail"], r.text
    form = {k: str(v) for k, v in {**base, "kimg": kimg}.items()}
    page = admin.post("/jobs", data=form)
    assert page.status_code == 422 and 'name="confirm_long"' in page.text
    try:
        ok = admin.post("/api/jobs", json={**base, "kimg": kimg, "confirm_long": True})
        assert ok.status_code == 201, ok.text
        admin.post(f"/api/jobs/{ok.json()['id']}/cancel")
    finally:
        kill_trainers(live_app.settings.runs_dir)
    short = admin.post("/api/jobs/estimate", json={**base, "kimg": 1}).json()
    assert short["over_a_day"] is False
