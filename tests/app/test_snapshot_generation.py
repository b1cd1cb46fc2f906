"""Generation on the snapshot page: a conditional snapshot defaults to the training data's
label mix (never the trainer's wording), NIfTI files carry the pixel spacing and say they are
synthetic."""

from __future__ import annotations

import gzip
import io
import json
import subprocess
import sys
import zipfile
from pathlib import Path

import nibabel as nib
import pytest

from app.db import session_scope
from app.models import DatasetVersion, Job, Snapshot
from app.services.training import snapshots as svc
from tests.app.job_helpers import make_dataset

ROOT = Path(__file__).resolve().parents[2]


def _with_spacing(src: Path, spacing: list[float]) -> None:
    """Rewrite the zip's medsynth.json with a pixel spacing, as the exporter writes it."""
    with zipfile.ZipFile(src) as zf:
        members = {n: zf.read(n) for n in zf.namelist()}
    prov = json.loads(members["medsynth.json"]) | {"pixel_spacing_mm": spacing}
    members["medsynth.json"] = json.dumps(prov).encode()
    with zipfile.ZipFile(src, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)


@pytest.fixture
def cond_snapshot(db, settings) -> int:
    """A conditional 16² snapshot trained on 8 images, 1 in 4 tumour, spacing 0.7 × 0.8 mm."""
    ds_id = make_dataset(db, settings, n=8, tumour_every=4)
    with session_scope(db) as session:
        zip_path = Path(session.get(DatasetVersion, ds_id).zip_path)
    _with_spacing(zip_path, [0.7, 0.8])
    run = settings.runs_dir / "cond"
    argv = [sys.executable, "-m", "trainer", "train", "--data", str(zip_path), "--outdir",
            str(run), "--res", "16", "--kimg", "0.008", "--tick", "0.008", "--batch", "4",
            "--cbase", "64", "--cmax", "16", "--zdim", "16", "--cond",
            "--device", "cpu"]  # fmt: skip
    out = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    snap_file = next(run.glob("snapshot-*.pt"))
    with session_scope(db) as session:
        job = Job(dataset_id=ds_id, state="completed", options={"cond": True}, run_dir=str(run),
                  resolution=16, total_kimg=0.008, kimg=0.008)  # fmt: skip
        job.snapshots.append(Snapshot(kimg=0, nimg=8, path=str(snap_file)))
        session.add(job)
        session.flush()
        return job.snapshots[0].id


def test_seeds_split_by_the_training_mix():
    groups = svc.split_by_class("0-7", 0.25)
    assert groups == {0: "0,1,2,4,5,6", 1: "3,7"}
    assert svc.split_by_class("5", 0.0) == {0: "5", 1: ""}


def test_a_conditional_snapshot_defaults_to_the_label_mix(db, settings, cond_snapshot):
    with session_scope(db) as session:
        snap = session.get(Snapshot, cond_snapshot)
        assert svc.label_mix(snap) == pytest.approx(0.25)
        gen = svc.generate(settings, snap, "0-7", 1.0, None, "png")
        assert gen.tumour_share == pytest.approx(0.25) and len(gen.files) == 8
        one = svc.generate(settings, snap, "0-1", 1.0, 1, "png")
        assert one.tumour_share is None and len(one.files) == 2


def test_the_page_offers_the_mix_and_never_shows_trainer_wording(live_app, admin, cond_snapshot):
    page = admin.get(f"/snapshots/{cond_snapshot}")
    assert page.status_code == 200 and "the training data's mix (25% tumour)" in page.text
    grid = admin.get(f"/snapshots/{cond_snapshot}/generate?seeds=0-3&trunc=1&class=",
                     headers={"HX-Request": "true"})  # fmt: skip
    assert grid.status_code == 200 and grid.text.count("<img") == 4
    assert "--class" not in grid.text and "pass " not in grid.text


def test_nifti_has_the_datasets_spacing_and_says_synthetic(live_app, admin, cond_snapshot):
    r = admin.get(f"/api/snapshots/{cond_snapshot}/generate.zip?seeds=0-1&format=nifti")
    assert r.status_code == 200, r.text
    zf = zipfile.ZipFile(io.BytesIO(r.content))
    name = sorted(zf.namelist())[0]
    img = nib.Nifti1Image.from_bytes(gzip.decompress(zf.read(name)))
    assert img.header.get_zooms()[:2] == pytest.approx((0.8, 0.7))  # x = column, y = row
    assert b"SYNTHETIC" in bytes(img.header["descrip"])


def test_generated_label_maps_are_outlines_on_their_images_not_extra_images(settings):
    """A masked generator writes seedN.png + seedN.mask.png: the page lists one image per seed
    and draws the label map as liver (palette 254) and tumour (255) outlines on it."""
    import numpy as np
    from PIL import Image

    token = "gen-" + "a" * 20
    folder = settings.tmp_dir / token
    folder.mkdir(parents=True)
    gray = np.full((16, 16), 100, np.uint8)
    labels = np.zeros((16, 16), np.uint8)
    labels[3:12, 3:12] = 1
    labels[6:9, 6:9] = 2
    Image.fromarray(gray).save(folder / "seed0000.png")
    Image.fromarray(labels).save(folder / "seed0000.mask.png")
    Image.fromarray(gray).save(folder / "seed0001.png")
    gen = svc.Generated(token, folder, sorted(folder.iterdir()))
    assert [f.name for f in gen.images] == ["seed0000.png", "seed0001.png"]
    assert gen.has_mask(gen.images[0]) and not gen.has_mask(gen.images[1])
    with Image.open(io.BytesIO(svc.outlined_image(settings, token, "seed0000.png"))) as img:
        idx = np.asarray(img)
    assert img.mode == "P"
    assert idx[3, 5] == 254 and idx[6, 7] == 255 and idx[7, 7] != 255  # outlines, not fills
    with pytest.raises(Exception, match="no label map"):
        svc.outlined_image(settings, token, "seed0001.png")
