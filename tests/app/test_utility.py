"""Utility runs through the app: started from a snapshot, run in the background, results page
and exports; the held-out refusal and bad requests get a clear 4xx."""

from __future__ import annotations

import csv
import io
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import select

from app.db import session_scope
from app.models import DatasetItem, DatasetVersion, Job, Review, Snapshot, User, Volume
from tests.app.job_helpers import kill_trainers, wait_for
from tests.trainer.helpers import TINY
from tests.trainer.utility_phantoms import pair_zip

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow  # a run starts `python -m trainer utility`


def _version(session, name: str, zip_path: str, volume: Volume, admin: User) -> int:
    ds = DatasetVersion(name=name, resolution=16, window="liver", window_width=150,
                        window_level=30, bit_depth=8, content_hash="0" * 64, num_images=4,
                        zip_path=zip_path, masks=True)  # fmt: skip
    session.add(ds)
    session.flush()
    for k in range(4):
        review = Review(volume_id=volume.id, slice_index=k, user_id=admin.id,
                        decision="approved", label="normal")  # fmt: skip
        session.add(review)
        session.flush()
        session.add(DatasetItem(dataset_id=ds.id, position=k, volume_id=volume.id,
                                slice_index=k, label="normal", review_id=review.id))  # fmt: skip
    return ds.id


def _volume(session, name: str) -> Volume:
    v = Volume(
        name=name,
        source_path="-",
        source_sha256="0" * 64,
        cache_path="-",
        shape=[16, 16, 8],
        spacing=[1, 1, 1],
        affine=[],
        hu_min=-1000,
        hu_max=1000,
    )
    session.add(v)
    session.flush()
    return v


@pytest.fixture
def world(live_app, tmp_path):
    """A paired snapshot trained (0 kimg) on a train version, a held-out test version of
    another patient, and an 'overlap' version of the training patient."""
    train = pair_zip(tmp_path / "train.zip", [1, 2, 3], res=16)
    test = pair_zip(tmp_path / "test.zip", [11, 12], res=16, dataset_id=2)
    run = tmp_path / "run"
    subprocess.run([sys.executable, "-m", "trainer", "train", "--data", train, "--outdir",
                    str(run), "--kimg", "0", *TINY, "--aug", "noaug"], cwd=ROOT, check=True,
                   capture_output=True, timeout=300)  # fmt: skip
    with session_scope(live_app.sessions) as s:
        admin = s.scalar(select(User).where(User.username == "admin"))
        a, b = _volume(s, "a"), _volume(s, "b")
        ids = {"train": _version(s, "train", train, a, admin),
               "test": _version(s, "test", test, b, admin),
               "overlap": _version(s, "overlap", test, a, admin)}  # fmt: skip
        job = Job(
            dataset_id=ids["train"],
            resolution=16,
            total_kimg=0,
            state="completed",
            run_dir=str(live_app.settings.runs_dir / "1"),
            options={"data": train},
        )
        s.add(job)
        s.flush()
        snap = Snapshot(job_id=job.id, kimg=0, path=str(run / "snapshot-000000.pt"))
        s.add(snap)
        s.flush()
        ids["snapshot"] = snap.id
    yield ids
    kill_trainers(live_app.settings.runs_dir)


BODY = {"arms": "real,real+aug,real+syn:1", "fractions": "0.5,1", "seeds": 1, "steps": 3,
        "device": "cpu"}  # fmt: skip


def test_a_run_is_computed_and_shown_with_exports(live_app, admin, world):
    sid = world["snapshot"]
    r = admin.post(f"/api/snapshots/{sid}/utility", json={**BODY, "test_dataset_id": world["test"]})
    assert r.status_code == 202, r.text
    run_id = r.json()["id"]
    again = admin.post(f"/api/snapshots/{sid}/utility",
                       json={**BODY, "test_dataset_id": world["test"]})  # fmt: skip
    assert again.json()["id"] == run_id  # a double click is one run

    def done():
        run = admin.get(f"/api/utility-runs/{run_id}").json()
        return run if run["state"] in ("completed", "failed", "cancelled") else None

    run = wait_for(done, timeout=240, what="the utility run")
    assert run["state"] == "completed", run["error"]
    assert run["result"]["metric"] == "dice" and len(run["result"]["results"]) == 6
    assert run["verdict"] and run["progress"]["estimate"].startswith("estimate")
    page = admin.get(f"/utility-runs/{run_id}")
    assert (
        page.status_code == 200
        and "utility-curve" in page.text
        and run["verdict"][:20] in (page.text.replace("&#39;", "'"))
    )
    # one seed: the page says why nothing is called significant, and shows no p-value
    assert "utility-not-callable" in page.text and "only 1 seed" in page.text
    assert ", p 0." not in page.text and "<strong>Cannot" not in page.text
    rows = list(
        csv.DictReader(io.StringIO(admin.get(f"/api/utility-runs/{run_id}/results.csv").text))
    )
    assert {r["arm"] for r in rows} == {"real", "real+aug", "real+syn:1"}
    assert admin.get(f"/api/utility-runs/{run_id}/results.json").json()["task"] == "segmentation"
    panel = admin.get(f"/snapshots/{sid}/utility", headers={"HX-Request": "true"})
    assert f"/utility-runs/{run_id}" in panel.text


def test_overlap_and_bad_requests_are_refused(live_app, admin, reader, world):
    sid = world["snapshot"]
    form = admin.get(f"/snapshots/{sid}/utility", headers={"HX-Request": "true"}).text
    assert '<option value="cpu"' in form and '<option value="cuda"' not in form  # no GPU here
    r = admin.post(f"/api/snapshots/{sid}/utility",
                   json={**BODY, "test_dataset_id": world["test"], "device": "cuda"})  # fmt: skip
    assert r.status_code == 422 and "no GPU" in r.json()["detail"]
    r = admin.post(f"/api/snapshots/{sid}/utility",
                   json={**BODY, "test_dataset_id": world["overlap"]})  # fmt: skip
    assert r.status_code == 409 and "not held out" in r.json()["detail"]
    r = admin.post(f"/api/snapshots/{sid}/utility",
                   json={**BODY, "test_dataset_id": world["train"]})  # fmt: skip
    assert r.status_code == 409
    r = admin.post(
        f"/api/snapshots/{sid}/utility",
        json={**BODY, "test_dataset_id": world["test"], "arms": "real,magic"},
    )
    assert r.status_code == 422 and "unknown arm magic" in r.json()["detail"]
    r = admin.post(f"/api/snapshots/{sid}/utility",
                   json={**BODY, "test_dataset_id": world["test"], "fractions": "0,2"})  # fmt: skip
    assert r.status_code == 422 and "fractions" in r.json()["detail"]
    r = admin.post(f"/api/snapshots/{sid}/utility", json={**BODY, "test_dataset_id": 999})
    assert r.status_code == 404
    assert (
        reader.post(
            f"/api/snapshots/{sid}/utility", json={**BODY, "test_dataset_id": world["test"]}
        ).status_code
        == 403
    )
    with session_scope(live_app.sessions) as s:
        assert s.scalar(select(DatasetVersion).where(DatasetVersion.id == world["test"])).masks
