"""Training jobs over HTTP with the real trainer, form validation, permissions and the pages."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import pytest
from PIL import Image

from app.db import session_scope
from app.errors import InvalidInput
from app.models import Job, Snapshot
from app.services.training.job_options import Devices, JobOptionsInvalid, validate_job_options
from tests.app.job_helpers import TINY, kill_trainers, make_dataset, wait_for


@pytest.fixture
def no_stray_trainers(settings):
    yield
    kill_trainers(settings.runs_dir)


def _job(client, job_id: int) -> dict:
    r = client.get(f"/api/jobs/{job_id}")
    assert r.status_code == 200, r.text
    return r.json()


@pytest.mark.slow
def test_job_runs_to_completion_and_its_snapshots_are_imported(
    live_app, admin, reader, no_stray_trainers
):
    ds = make_dataset(live_app.sessions, live_app.settings)
    r = admin.post("/api/jobs", json={"dataset_id": ds, **TINY, "kimg": 0.064, "mirror": True})
    assert r.status_code == 201, r.text
    job = r.json()
    assert job["state"] == "queued" and job["total_kimg"] == 0.064
    assert Path(job["run_dir"]) == live_app.settings.runs_dir / str(job["id"])

    done = wait_for(
        lambda: (j := _job(admin, job["id"]))["state"] in ("completed", "failed") and j,
        what="the job to finish",
    )
    assert done["state"] == "completed", done
    assert done["exit_code"] == 0 and done["error"] is None
    assert done["kimg"] >= 0.064 and done["progress"] == 1.0
    assert done["snapshots"] and all(s["size_bytes"] > 0 for s in done["snapshots"])
    assert done["stats"]["tick"] >= 1 and "loss_G" in done["stats"]
    assert "done:" in done["log_tail"]
    assert done["pid"] and done["device"] == "cpu" and done["attempts"] == 1

    stats = admin.get(f"/api/jobs/{job['id']}/stats").json()
    assert len(stats) >= 4 and stats[-1]["kimg"] == pytest.approx(0.064)
    latest = reader.get(f"/api/jobs/{job['id']}/samples/latest.png")
    assert latest.status_code == 200 and latest.headers["content-type"] == "image/png"
    page = reader.get(f"/jobs/{job['id']}")
    assert page.status_code == 200 and 'data-state="completed"' in page.text
    assert "hx-trigger" not in page.text.split('id="job-progress"')[1].split(">")[0]
    assert "<svg" in page.text and "Losses" in page.text

    snap = done["snapshots"][-1]
    info = reader.get(f"/api/snapshots/{snap['id']}").json()
    assert info["job_id"] == job["id"] and info["resolution"] == 16
    assert reader.get(f"/api/snapshots/{snap['id']}/download").status_code == 403
    pt = admin.get(f"/api/snapshots/{snap['id']}/download")
    assert pt.status_code == 200 and len(pt.content) == snap["size_bytes"]

    z = reader.post(f"/api/snapshots/{snap['id']}/generate", json={"seeds": "0-3", "trunc": 0.7})
    assert z.status_code == 200 and z.headers["content-type"] == "application/zip"
    names = zipfile.ZipFile(io.BytesIO(z.content)).namelist()
    assert sorted(names) == [f"seed{i:04d}.png" for i in range(4)]
    nii = reader.get(f"/api/snapshots/{snap['id']}/generate.zip?seeds=5,7&format=nifti")
    assert nii.status_code == 200
    assert sorted(zipfile.ZipFile(io.BytesIO(nii.content)).namelist()) == [
        "seed0005.nii.gz", "seed0007.nii.gz"
    ]  # fmt: skip

    grid = reader.get(
        f"/snapshots/{snap['id']}/generate?seeds=0-2&trunc=1&class=", headers={"HX-Request": "true"}
    )
    assert grid.status_code == 200 and grid.text.count("<img") == 3
    src = grid.text.split('src="')[1].split('"')[0]
    img = reader.get(src)
    assert img.status_code == 200
    assert Image.open(io.BytesIO(img.content)).size == (16, 16)
    bad = reader.get(
        f"/snapshots/{snap['id']}/generate?seeds=0-999", headers={"HX-Request": "true"}
    )
    # the generation limits (issue 16) refuse it before the page: a 4xx naming the cap
    assert bad.status_code in (422, 429) and "at most" in bad.text


@pytest.mark.parametrize(
    ("change", "field", "words"),
    [
        ({"dataset_id": 999}, "dataset_id", "does not exist"),
        ({"kimg": 0}, "kimg", "> 0"),
        ({"kimg": -5}, "kimg", "> 0"),
        ({"resolution": 24}, "resolution", "power of two"),
        ({"resolution": 32}, "resolution", "16×16"),
        ({"batch": 0}, "batch", "between 1"),
        ({"batch": 2.5}, "batch", "whole number"),
        ({"gamma": -1}, "gamma", "≥ 0"),
        ({"aug": "always"}, "aug", "'ada' or 'noaug'"),
        ({"target": 1.0}, "target", "between 0 and 1"),
        ({"snap": 0}, "snap", "between 1"),
        ({"gpus": 1}, "gpus", "this machine has 0"),
        ({"cbase": 8}, "cbase", "at least the resolution"),
        ({"resume_from": 12345}, "resume_from", "does not exist"),
        ({"kimgs": 3}, "form", "unknown field"),
    ],
)
def test_each_bad_field_is_named_with_what_is_wrong(db, settings, change, field, words):
    ds = make_dataset(db, settings)
    with session_scope(db) as session:
        with pytest.raises(JobOptionsInvalid) as err:
            validate_job_options(session, {"dataset_id": ds, **TINY, **change}, Devices())
    assert words in err.value.errors[field], err.value.errors


def test_batch_must_divide_over_the_gpus_it_runs_on(db, settings):
    ds = make_dataset(db, settings)
    four = Devices(gpus=4, names=("fake",) * 4)
    with session_scope(db) as session:
        with pytest.raises(JobOptionsInvalid) as err:
            validate_job_options(session, {"dataset_id": ds, **TINY, "gpus": 4, "batch": 6}, four)
        assert "not divisible by the 4 GPUs" in err.value.errors["batch"]
        _, opts = validate_job_options(session, {"dataset_id": ds, **TINY, "gpus": 4}, four)
        assert opts["batch"] == 4 and opts["gpus"] == 4


def test_defaults_come_from_the_dataset(db, settings):
    ds = make_dataset(db, settings)
    with session_scope(db) as session:
        _, opts = validate_job_options(session, {"dataset_id": ds}, Devices())
    # auto batch at 16²: 32; gamma 0.0002 · 16² / 32
    assert opts["resolution"] == 16 and opts["batch"] == 32 and opts["gpus"] == 0
    assert opts["gamma"] == pytest.approx(0.0016) and opts["aug"] == "ada"


def test_conditioning_needs_both_labels(db, settings):
    ds = make_dataset(db, settings, tumour_every=0)
    with session_scope(db) as session:
        with pytest.raises(InvalidInput) as err:
            validate_job_options(session, {"dataset_id": ds, "cond": True}, Devices())
    assert "all are normal" in err.value.detail


def _fake_snapshot(db, settings, dataset_id: int, network: dict, opts: dict) -> int:
    """A finished job with one snapshot whose run wrote `network` into options.json."""
    run = settings.runs_dir / f"fake-{network['img_resolution']}-{network['img_channels']}"
    run.mkdir(parents=True)
    (run / "options.json").write_text(json.dumps({"network": network}))
    (run / "snapshot-000004.pt").write_bytes(b"not really a snapshot")
    with session_scope(db) as session:
        job = Job(dataset_id=dataset_id, state="completed", options=opts, run_dir=str(run),
                  resolution=network["img_resolution"], total_kimg=4, kimg=4)  # fmt: skip
        job.snapshots.append(Snapshot(kimg=4, path=str(run / "snapshot-000004.pt")))
        session.add(job)
        session.flush()
        return job.snapshots[0].id


def test_fine_tuning_needs_a_snapshot_of_the_same_resolution_and_channels(db, settings):
    ds = make_dataset(db, settings)
    net = {"img_resolution": 16, "img_channels": 1, "c_dim": 0, "channel_base": 64,
           "channel_max": 16}  # fmt: skip
    at32 = _fake_snapshot(db, settings, ds, {**net, "img_resolution": 32}, {})
    rgb = _fake_snapshot(db, settings, ds, {**net, "img_channels": 3}, {})
    good = _fake_snapshot(db, settings, ds, net, {})
    base = {"dataset_id": ds, "resolution": 16, "kimg": 1}
    with session_scope(db) as session:
        with pytest.raises(JobOptionsInvalid) as err:
            validate_job_options(session, {**base, "resume_from": at32}, Devices())
        assert "32×32" in err.value.errors["resume_from"]
        with pytest.raises(JobOptionsInvalid) as err:
            validate_job_options(session, {**base, "resume_from": rgb}, Devices())
        assert "3-channel" in err.value.errors["resume_from"]
        with pytest.raises(JobOptionsInvalid) as err:
            validate_job_options(session, {**base, "resume_from": good, "cond": True}, Devices())
        assert "without labels" in err.value.errors["resume_from"]
        with pytest.raises(JobOptionsInvalid) as err:
            validate_job_options(session, {**base, "resume_from": good, "cmax": 32}, Devices())
        assert "channel max 16" in err.value.errors["cmax"]
        _, opts = validate_job_options(session, {**base, "resume_from": good}, Devices())
        assert (opts["cbase"], opts["cmax"]) == (64, 16)  # the model size is inherited


def test_api_rejects_bad_input_with_a_json_detail(live_app, admin):
    ds = make_dataset(live_app.sessions, live_app.settings)
    r = admin.post("/api/jobs", json={"dataset_id": ds, "kimg": 0, "resolution": 12})
    assert r.status_code == 422
    detail = r.json()["detail"]
    assert "kimg: must be > 0" in detail and "resolution: 12 is not a power of two" in detail
    assert admin.post("/api/jobs", json={"dataset_id": 404}).status_code == 422
    assert admin.get("/api/jobs/404").status_code == 404
    assert admin.get("/api/jobs").json() == []


def test_form_shows_errors_inline_and_the_cpu_warning(live_app, admin):
    make_dataset(live_app.sessions, live_app.settings)
    page = admin.get("/jobs")
    assert page.status_code == 200 and "No GPU on this machine" in page.text
    assert 'placeholder="0.0016"' in page.text  # the default γ for 16² / batch 32
    form = {"dataset_id": "1", "resolution": "16", "kimg": "0", "batch": "4"}
    r = admin.post("/jobs", data=form, headers={"HX-Request": "true"})
    assert r.status_code == 200 and 'id="err-kimg"' in r.text and "must be &gt; 0" in r.text
    assert 'id="job-form"' in r.text and "<html" not in r.text
    r = admin.post("/jobs", data=form)
    assert r.status_code == 422 and 'id="err-kimg"' in r.text


def test_reviewers_watch_but_cannot_start_cancel_resume_or_download(live_app, admin, reader):
    ds = make_dataset(live_app.sessions, live_app.settings)
    r = reader.post("/api/jobs", json={"dataset_id": ds, **TINY, "kimg": 0.05})
    assert r.status_code == 403 and "admin" in r.json()["detail"]
    with session_scope(live_app.sessions) as session:  # a job the monitor will not start
        job = Job(dataset_id=ds, state="cancelled", options={}, run_dir="/nonexistent",
                  resolution=16, total_kimg=1)  # fmt: skip
        session.add(job)
        session.flush()
        snap = Snapshot(job_id=job.id, kimg=0, path="/nonexistent/snapshot-000000.pt")
        session.add(snap)
        session.flush()
        job_id, snap_id = job.id, snap.id
    for url in (f"/api/jobs/{job_id}/cancel", f"/api/jobs/{job_id}/resume"):
        r = reader.post(url)
        assert r.status_code == 403 and "admin" in r.json()["detail"]
    assert reader.get(f"/api/snapshots/{snap_id}/download").status_code == 403
    assert reader.get("/api/jobs").json()[0]["id"] == job_id
    page = reader.get("/jobs")
    assert page.status_code == 200 and "Only admins start" in page.text
    assert reader.get(f"/jobs/{job_id}").status_code == 200
    # an admin gets a clear 409: nothing to resume from
    r = admin.post(f"/api/jobs/{job_id}/resume")
    assert r.status_code == 409 and "no snapshot" in r.json()["detail"]


@pytest.mark.slow
def test_a_new_job_fine_tunes_from_another_runs_snapshot(live_app, admin, no_stray_trainers):
    ds = make_dataset(live_app.sessions, live_app.settings)
    first = admin.post("/api/jobs", json={"dataset_id": ds, **TINY, "kimg": 0.032}).json()
    done = wait_for(
        lambda: (j := _job(admin, first["id"]))["state"] in ("completed", "failed") and j,
        what="the first job",
    )
    assert done["state"] == "completed", done
    source = done["snapshots"][-1]["id"]
    body = {"dataset_id": ds, "resolution": 16, "batch": 4, "tick": 0.016, "kimg": 0.032,
            "resume_from": source}  # fmt: skip
    r = admin.post("/api/jobs", json=body)
    assert r.status_code == 201, r.text
    tuned = r.json()
    assert tuned["resume_from"] == source
    assert (tuned["options"]["cbase"], tuned["options"]["cmax"]) == (64, 16)  # from options.json
    end = wait_for(
        lambda: (j := _job(admin, tuned["id"]))["state"] in ("completed", "failed") and j,
        what="the fine-tuning job",
    )
    assert end["state"] == "completed", end
    assert "fine-tuning from the snapshot" in end["log_tail"]
    assert end["run_dir"] != done["run_dir"] and end["snapshots"]
