"""Metric runs over real HTTP: a real trainer snapshot, a real `python -m trainer metrics`
process with a tiny feature extractor (no downloaded weights), the API, the pages, cancel."""

from __future__ import annotations

import dataclasses
import io
import os
import signal
import zipfile

import numpy as np
import pytest
from PIL import Image

from app.db import session_scope
from app.models import DatasetVersion
from app.services.studies.results import snapshot_metrics
from tests.app.job_helpers import kill_trainers, wait_for
from tests.app.metric_helpers import FAST, TINY_EXTRACTOR_MODULE, metric_world, wait_run
from tests.app.study_setup import tiny_run_fixture  # noqa: F401  (provides tiny_run)

pytestmark = pytest.mark.slow  # each run starts `python -m trainer metrics`


@pytest.fixture
def settings(settings, tmp_path, monkeypatch):
    """Every run registers the tiny extractor; torch's cache is this test's own."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    return dataclasses.replace(settings, metrics_extractor_module=TINY_EXTRACTOR_MODULE)


@pytest.fixture
def no_stray_runs(settings):
    yield
    kill_trainers(settings.runs_dir)


def test_a_run_is_computed_stored_and_shown(live_app, admin, reader, tiny_run, no_stray_runs):
    world = metric_world(live_app, tiny_run)
    sid = world.snapshot_id
    r = admin.post(f"/api/snapshots/{sid}/metrics", json=FAST)
    assert r.status_code == 202, r.text
    run = r.json()
    assert run["state"] in ("queued", "running") and run["metrics"] == FAST["metrics"]
    again = admin.post(f"/api/snapshots/{sid}/metrics", json=FAST)  # a double click
    assert again.status_code == 202 and again.json()["id"] == run["id"]

    done = wait_run(admin, run["id"])
    assert done["state"] == "completed", done
    assert done["exit_code"] == 0 and done["error"] is None and done["pid"]
    assert done["progress"]["estimate"].startswith("estimate on cpu")
    metrics = done["result"]["metrics"]
    assert set(metrics) == {"fid", "kid", "pr", "memorization", "c2st"}
    assert "per_sample" not in metrics["memorization"]  # kept in result.json only
    extractors = done["result"]["environment"]["feature_extractors"]
    assert extractors["fid"]["name"] == "medsynth-test-tiny"

    listing = reader.get(f"/api/snapshots/{sid}/metrics").json()
    assert [x["id"] for x in listing["runs"]] == [run["id"]]
    latest = listing["latest"]
    assert latest["fid"] == pytest.approx(metrics["fid"]["value"]) and latest["fid"] > 0
    assert latest["fid_relative"] == pytest.approx(metrics["fid"]["relative"])
    assert latest["kid"] == pytest.approx(metrics["kid"]["mean"]) and latest["kid_std"] >= 0
    assert 0 <= latest["precision"] <= 1 and 0 <= latest["recall"] <= 1
    lo, hi = latest["c2st_ci95"]
    assert lo <= latest["c2st_accuracy"] <= hi and 0 <= latest["copy_share"] <= 1
    assert latest["ppl"] is None and latest["runs"]["fid"] == run["id"]

    page = reader.get(f"/snapshots/{sid}")
    assert page.status_code == 200 and 'id="metrics-panel"' in page.text
    assert f"{latest['fid']:.2f}" in page.text and "50 % = indistinguishable" in page.text
    assert "torch-fidelity" in page.text and "Compute metrics" not in page.text  # reader
    assert f"/api/metric-runs/{run['id']}/pairs/0/generated.png" in page.text

    # The closest pair: the generated sample regenerated from its seed, the real from the zip.
    pair = metrics["memorization"]["top_pairs"][0]
    gen = reader.get(f"/api/metric-runs/{run['id']}/pairs/0/generated.png")
    real = reader.get(f"/api/metric-runs/{run['id']}/pairs/0/real.png")
    assert gen.status_code == 200 and real.status_code == 200, (gen.text, real.text)
    assert Image.open(io.BytesIO(gen.content)).size == (16, 16)
    with session_scope(live_app.sessions) as session:
        zip_path = session.get(DatasetVersion, world.dataset_id).zip_path
    with zipfile.ZipFile(zip_path) as zf:
        expected = np.asarray(Image.open(io.BytesIO(zf.read(pair["real_name"]))))
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(real.content))), expected)

    job_id = admin.get(f"/api/snapshots/{sid}").json()["job_id"]
    assert "metric runs" in admin.get(f"/jobs/{job_id}").text  # the FID-over-kimg series
    with session_scope(live_app.sessions) as session:
        assert snapshot_metrics(session, sid)["fid"] == pytest.approx(latest["fid"])


def test_cancel_a_queued_and_a_running_run_and_a_killed_one_fails(
    live_app, admin, tiny_run, no_stray_runs
):
    sid = metric_world(live_app, tiny_run).snapshot_id
    long = {"metrics": ["c2st"], "num": 200000, "device": "cpu"}
    first = admin.post(f"/api/snapshots/{sid}/metrics", json=long).json()
    second = admin.post(f"/api/snapshots/{sid}/metrics", json={**long, "num": 199999}).json()
    third = admin.post(f"/api/snapshots/{sid}/metrics", json={**long, "num": 199998}).json()
    assert len({first["id"], second["id"], third["id"]}) == 3

    wait_run(admin, first["id"], states=("running",), timeout=30)
    r = admin.post(f"/api/metric-runs/{second['id']}/cancel")  # one slot: still queued
    assert r.status_code == 200 and r.json()["state"] == "cancelled"

    wait_for(lambda: (admin.get(f"/api/metric-runs/{first['id']}").json()["progress"] or {})
             .get("stage"), timeout=60, what="the first progress line")  # fmt: skip
    live = admin.get(f"/snapshots/{sid}/metrics?part=live", headers={"HX-Request": "true"})
    assert live.status_code == 200 and 'hx-trigger="every 2s"' in live.text
    assert f'data-run="{first["id"]}" data-state="running"' in live.text
    assert "estimate on cpu" in live.text and "c2st" in live.text
    r = admin.post(f"/api/metric-runs/{first['id']}/cancel")
    assert r.status_code == 202 and r.json()["cancelling"] is True
    assert admin.post(f"/api/metric-runs/{first['id']}/cancel").status_code == 202  # harmless
    done = wait_run(admin, first["id"], timeout=60)
    assert done["state"] == "cancelled" and done["error"] is None
    assert done["exit_code"] in (4, -15)
    assert admin.post(f"/api/metric-runs/{first['id']}/cancel").status_code == 200
    page = admin.get(f"/snapshots/{sid}").text
    assert f'data-run="{first["id"]}"' in page and "cancelled" in page

    # The slot is free: the third run starts; killed from outside, it fails and says how.
    url = f"/api/metric-runs/{third['id']}"
    os.killpg(wait_for(lambda: admin.get(url).json()["pid"], timeout=30), signal.SIGKILL)
    done = wait_run(admin, third["id"], timeout=30)
    assert done["state"] == "failed" and done["error"].startswith("killed by signal 9 (SIGKILL)")


def test_bad_requests_get_a_clear_4xx(live_app, admin, reader, tiny_run):
    sid = metric_world(live_app, tiny_run).snapshot_id
    url = f"/api/snapshots/{sid}/metrics"
    cases = [
        ({"metrics": ["fid", "sharpness"]}, 422, "unknown metric 'sharpness'"),
        ({"metrics": []}, 422, "choose at least one metric"),
        ({"metrics": ["kid"], "num": 1}, 422, "num: must be between 2"),
        ({"metrics": ["kid"], "num": "many"}, 422, "num: 'many' is not a number"),
        ({"metrics": ["kid"], "device": "tpu"}, 422, "device: must be one of"),
        ({"metrics": ["kid"], "colour": 1}, 422, "unknown field(s): colour"),
    ]
    for body, status, words in cases:
        r = admin.post(url, json=body)
        assert r.status_code == status and words in r.json()["detail"], (body, r.text)
    assert admin.post("/api/snapshots/9999/metrics", json=FAST).status_code == 404
    assert admin.get("/api/metric-runs/9999").status_code == 404
    r = reader.post(url, json=FAST)
    assert r.status_code == 403 and "admin" in r.json()["detail"]

    orphan = metric_world(live_app, tiny_run)
    with session_scope(live_app.sessions) as session:  # its dataset zip is gone
        dataset = session.get(DatasetVersion, orphan.dataset_id)
        dataset.zip_path = str(live_app.settings.datasets_dir / "gone.zip")
    r = admin.post(f"/api/snapshots/{orphan.snapshot_id}/metrics", json=FAST)
    assert r.status_code == 409 and "dataset zip" in r.json()["detail"]
    assert admin.get(url).json()["runs"] == []  # nothing was queued
