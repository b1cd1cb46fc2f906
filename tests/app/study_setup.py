"""Reader-study test set-up: a real tiny snapshot from the real trainer (once per session) and
the dataset / job / snapshot rows that point at it."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from app.db import session_scope
from app.models import DatasetItem, DatasetVersion, Job, Review, Snapshot, Study, User, Volume
from tests.trainer.zipdata import phantom_zip

ROOT = Path(__file__).resolve().parents[2]
RES = 16
N_IMAGES = 16
_CACHE: dict[str, TinyRun] = {}


@dataclass(frozen=True)
class TinyRun:
    zip_path: Path
    snapshot_path: Path


@dataclass(frozen=True)
class World:
    dataset_id: int
    snapshot_id: int
    holdout_id: int | None = None


def _train(base: Path, cond: bool) -> TinyRun:
    zip_path = Path(phantom_zip(base / "train.zip", n=N_IMAGES, res=RES, seed=1))
    cmd = [sys.executable, "-m", "trainer", "train", "--data", str(zip_path),
           "--outdir", str(base / "run"), "--kimg", "0.02", "--tick", "0.01",
           "--cbase", "64", "--cmax", "16", "--batch", "4", "--zdim", "16", "--map", "2",
           "--snap", "1", "--device", "cpu", "--seed", "3"]  # fmt: skip
    cmd += ["--cond"] if cond else []
    subprocess.run(cmd, cwd=ROOT, check=True, capture_output=True, timeout=300)
    snaps = sorted((base / "run").glob("snapshot-*.pt"))
    assert snaps, "the trainer wrote no snapshot"
    return TinyRun(zip_path, snaps[-1])


@pytest.fixture(scope="session", name="tiny_run")
def tiny_run_fixture(tmp_path_factory) -> TinyRun:
    """Train the real trainer for a few images on a 16x16 zip; the snapshot is what studies use."""
    if "run" not in _CACHE:
        _CACHE["run"] = _train(tmp_path_factory.mktemp("study-trainer"), cond=False)
    return _CACHE["run"]


@pytest.fixture(scope="session", name="tiny_cond_run")
def tiny_cond_run_fixture(tmp_path_factory) -> TinyRun:
    """The same, conditioned on the zip's normal / tumour labels (half of each)."""
    if "cond" not in _CACHE:
        _CACHE["cond"] = _train(tmp_path_factory.mktemp("study-trainer-cond"), cond=True)
    return _CACHE["cond"]


def _dataset(session, name: str, zip_path: Path, n: int, res: int = RES) -> DatasetVersion:
    ds = DatasetVersion(name=name, resolution=res, window="liver", window_width=150,
                        window_level=30, bit_depth=8, content_hash="0" * 64, num_images=n,
                        zip_path=str(zip_path))  # fmt: skip
    session.add(ds)
    session.flush()
    return ds


def _items(session, ds: DatasetVersion, volume: Volume, slices: range, admin: User) -> None:
    """Provenance rows (volume, slice) for each image, as a frozen dataset version has."""
    for position, index in enumerate(slices):
        review = Review(volume_id=volume.id, slice_index=index, user_id=admin.id,
                        decision="approved", label="normal")  # fmt: skip
        session.add(review)
        session.flush()
        item = DatasetItem(dataset_id=ds.id, position=position, volume_id=volume.id,
                           slice_index=index, label="normal", review_id=review.id)  # fmt: skip
        session.add(item)


def _volume(session, name: str = "v") -> Volume:
    volume = Volume(name=name, source_path="-", source_sha256="0" * 64, cache_path="-",
                    shape=[16, 16, 32], spacing=[1, 1, 1], affine=[], hu_min=-1000,
                    hu_max=1000)  # fmt: skip
    session.add(volume)
    session.flush()
    return volume


def add_world(sessions, data_dir: Path, tiny: TinyRun, job_resolution: int = RES,
              holdout: bool = False, other_patients: bool = False,
              cond: bool = False) -> World:  # fmt: skip
    """A dataset version (the zip the snapshot was trained on), its job and the snapshot row.

    With `holdout`, a second version whose slices 8..23 overlap the training slices 0..15 of
    the same volume (patient); with `other_patients`, a second version of another volume: a
    held-out version as a patient-level split makes it.
    """
    data_dir.mkdir(parents=True, exist_ok=True)
    zip_path = data_dir / "train.zip"
    shutil.copy(tiny.zip_path, zip_path)
    with session_scope(sessions) as session:
        admin = session.scalar(select(User).where(User.username == "admin"))
        ds = _dataset(session, "train", zip_path, N_IMAGES)
        ds.num_tumour = N_IMAGES // 2  # phantom_zip labels every other image tumour
        job = Job(dataset_id=ds.id, resolution=job_resolution, total_kimg=0.02, state="completed",
                  run_dir=str(tiny.snapshot_path.parent), options={"cond": cond})  # fmt: skip
        session.add(job)
        session.flush()
        snap = Snapshot(job_id=job.id, kimg=0, path=str(tiny.snapshot_path))
        session.add(snap)
        holdout_id = None
        if holdout or other_patients:
            volume = _volume(session)
            _items(session, ds, volume, range(0, 16), admin)
            other_zip = Path(phantom_zip(data_dir / "other.zip", n=N_IMAGES, res=RES, seed=2))
            other = _dataset(session, "other", other_zip, N_IMAGES)
            second = _volume(session, "w") if other_patients else volume
            _items(session, other, second, range(0, 16) if other_patients else range(8, 24),
                   admin)  # fmt: skip
            holdout_id = other.id
        session.flush()
        return World(ds.id, snap.id, holdout_id)


def create_study(admin: httpx.Client, world: World, **overrides) -> dict:
    body = {"snapshot_id": world.snapshot_id, "dataset_id": world.dataset_id, "n_real": 3,
            "n_fake": 3, "readers": ["reader1", "reader2"], "truncation": 0.7,
            "rate_usable": True, **overrides}  # fmt: skip
    r = admin.post("/api/studies", json=body)
    assert r.status_code == 201, r.text
    assert r.json()["state"] == "preparing"  # the images are made in the background
    return wait_ready(admin, r.json()["id"])


def wait_ready(admin: httpx.Client, study_id: int, timeout_s: float = 300.0) -> dict:
    """Poll the study until its images are made; generous, so a loaded machine only waits."""
    deadline = time.monotonic() + timeout_s
    while (study := admin.get(f"/api/studies/{study_id}").json())["state"] == "preparing":
        assert time.monotonic() < deadline, f"study {study_id} still preparing: {study}"
        time.sleep(0.2)
    assert study["state"] == "open", study.get("prepare_error")
    return study


def truth_by_token(sessions, study_id: int) -> dict[str, bool]:
    """The answer key, read straight from the database (what no reader may reach)."""
    with session_scope(sessions) as session:
        study = session.get(Study, study_id)
        return {t.token: t.image.synthetic for r in study.readers for t in r.trials}


def answer_all(client: httpx.Client, study_id: int, rating_for=lambda i: 1 + i % 5) -> list[str]:
    """Answer every remaining trial through the JSON API; returns the tokens in order."""
    tokens = []
    while (r := client.get(f"/api/studies/{study_id}/next")).status_code == 200:
        token = r.json()["trial"]
        body = {"trial": token, "rating": rating_for(len(tokens)), "usable": True}
        assert client.post(f"/api/studies/{study_id}/answers", json=body).status_code == 200
        tokens.append(token)
    assert r.status_code == 204, r.text
    return tokens
