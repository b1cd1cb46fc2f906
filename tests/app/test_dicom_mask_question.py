"""A DICOM mask zip of one series in a folder that names no structure: the upload asks whether
it is the liver or the tumour (nothing is stored meanwhile), and the answer lands as that label."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from app.db import session_scope
from app.models import Volume
from app.services.curation.volumes import mask_array
from tests.app.dicom_files import ct_volume, expected_ras, write_series, zip_folder


def _upload(tmp_path: Path) -> tuple[dict, np.ndarray]:
    hu = ct_volume()
    write_series(tmp_path / "ct", hu)
    region = np.zeros(hu.shape, np.int16)
    region[10:25, 10:30, 1:5] = 1
    write_series(tmp_path / "m" / "seg1", region, intercept=0.0)  # says no structure
    ct = zip_folder(tmp_path / "ct", tmp_path / "ct.zip")
    masks = zip_folder(tmp_path / "m", tmp_path / "masks.zip")
    files = {"file": ("ct.zip", ct.read_bytes(), "application/zip"),
             "mask": ("masks.zip", masks.read_bytes(), "application/zip")}  # fmt: skip
    return files, region


def _volumes(live_app) -> list[Volume]:
    with session_scope(live_app.sessions) as session:
        return list(session.query(Volume))


def test_an_unnamed_mask_series_is_asked_about_then_labelled(live_app, admin, tmp_path):
    files, region = _upload(tmp_path)
    r = admin.post("/api/volumes", files=files)
    assert r.status_code == 422, r.text
    assert "neither liver nor tumour" in r.text and "mask_structure" in r.text
    assert "seg1" in r.text and _volumes(live_app) == []  # nothing half-stored
    r = admin.post("/api/volumes", files=files, data={"mask_structure": "tumour"})
    assert r.status_code == 201, r.text
    with session_scope(live_app.sessions) as session:
        volume = session.query(Volume).one()
        labels = mask_array(live_app.settings, volume)
    want = np.where(region > 0, 2, 0).astype(np.uint8)
    assert np.array_equal(labels, expected_ras(want))


def test_an_unknown_structure_answer_is_refused(live_app, admin, tmp_path):
    files, _ = _upload(tmp_path)
    r = admin.post("/api/volumes", files=files, data={"mask_structure": "spleen"})
    assert r.status_code == 422 and "liver or tumour, not 'spleen'" in r.text
    assert _volumes(live_app) == []
