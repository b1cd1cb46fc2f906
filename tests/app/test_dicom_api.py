"""DICOM over HTTP: zip and multi-file uploads, duplicates, hostile zips, and privacy end to end."""

from __future__ import annotations

import dataclasses
import io
import logging
import zipfile
from pathlib import Path

import pytest
from pydicom.uid import generate_uid

from app.settings import Settings
from tests.app.dicom_files import (
    ACCESSION,
    BIRTH_DATE,
    INSTITUTION,
    PATIENT_ID,
    PATIENT_NAME,
    ct_volume,
    write_localizer,
    write_series,
    zip_folder,
)
from tests.app.test_volumes_api import assert_nothing_left

SECRETS = [PATIENT_NAME, PATIENT_ID, ACCESSION, INSTITUTION, BIRTH_DATE, "Gordonfreeman"]
SECRETS += PATIENT_NAME.split("^")


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    data = tmp_path / "data"
    s = Settings(
        data_dir=data,
        database_url=f"sqlite:///{data / 'medsynth.db'}",
        secret_key="test-secret-key",
        max_upload_bytes=4 * 1024**2,
        max_decompressed_bytes=8 * 1024**2,
    )
    s.ensure_dirs()
    return s


def _study_zip(tmp_path: Path) -> Path:
    """Two CT series and a localizer under a folder named after the patient, plus a text file."""
    root = tmp_path / "export" / PATIENT_NAME.replace("^", "_")
    study = generate_uid()
    write_series(root / "ct1", ct_volume(seed=1), study_uid=study)
    write_series(root / "ct2", ct_volume(n=4, seed=2), study_uid=study, description="ARTERIAL")
    write_localizer(root / "ct1")
    notes = {f"{PATIENT_NAME.split('^')[0]} notes.txt": f"{PATIENT_ID} {BIRTH_DATE}".encode()}
    return zip_folder(tmp_path / "export", tmp_path / "study.zip", notes)


def _post_zip(client, path: Path, name: str = "study.zip"):
    return client.post("/api/volumes", files={"file": (name, path.read_bytes(), "application/zip")})


def _leaks(text: str | bytes) -> list[str]:
    data = text.encode() if isinstance(text, str) else text
    return [s for s in SECRETS if s.lower().encode() in data.lower()]


def test_zip_upload_answers_one_volume_per_series_and_leaks_nothing(
    live_app, admin, tmp_path, caplog, capfd
):
    caplog.set_level(logging.DEBUG)
    r = _post_zip(admin, _study_zip(tmp_path), name=f"{PATIENT_ID}.zip")
    assert r.status_code == 201, r.text
    body = r.json()
    assert sorted(v["num_slices"] for v in body["volumes"]) == [4, 6]
    assert body["non_dicom_skipped"] == 1
    assert {s["reason"] for s in body["skipped"]} == {"localizer/scout image", "not a DICOM file"}
    responses = [r.text]
    for v in body["volumes"]:
        one = admin.get(f"/api/volumes/{v['id']}").json()
        assert one["source_format"] == "dicom" and one["dicom"]["slices"] == v["num_slices"]
        assert one["dicom"]["series_description"] in ("ABD PORTAL VENOUS", "ARTERIAL")
        for url in (
            f"/api/volumes/{v['id']}",
            f"/volumes/{v['id']}",
            f"/api/volumes/{v['id']}/slices",
        ):
            page = admin.get(url)
            assert page.status_code == 200
            responses.append(page.text)
    responses += [admin.get("/api/volumes").text, admin.get("/volumes").text]
    assert "from DICOM" in responses[2] and "ABD PORTAL VENOUS" in admin.get("/volumes/1").text
    for text in responses:
        assert _leaks(text) == [], text[:300]
    for path in live_app.settings.data_dir.rglob("*"):
        if path.is_file():
            assert _leaks(path.read_bytes()) == [], path
    assert not any(live_app.settings.uploads_dir.iterdir())  # originals not kept by default
    out, err = capfd.readouterr()
    assert _leaks(caplog.text) == [] and _leaks(out + err) == []  # nor in the logs


def test_the_same_series_again_is_409_naming_the_existing_volume(live_app, admin, tmp_path):
    zipped = _study_zip(tmp_path)
    first = _post_zip(admin, zipped).json()["volumes"]
    r = _post_zip(admin, zipped)
    assert r.status_code == 409, r.text
    assert f"already ingested as volume {min(v['id'] for v in first)} " in r.json()["detail"]
    assert len(admin.get("/api/volumes").json()) == 2


def test_multi_file_selection_is_one_series(live_app, admin, tmp_path):
    paths = write_series(tmp_path / "s", ct_volume(n=5))
    files = [("file", (f"s/{p.name}", p.read_bytes(), "application/dicom")) for p in paths]
    r = admin.post("/api/volumes", files=files)
    assert r.status_code == 201, r.text
    assert [v["num_slices"] for v in r.json()["volumes"]] == [5]


def test_hostile_zips_are_refused_and_leave_nothing(live_app, admin, tmp_path):
    write_series(tmp_path / "s", ct_volume(n=3))
    evil = zip_folder(tmp_path / "s", tmp_path / "hostile.zip", {"../../../escape.dcm": b"DICM"})
    r = _post_zip(admin, evil)
    assert r.status_code == 422 and "'..' path component" in r.json()["detail"]
    bomb = zip_folder(tmp_path / "s", tmp_path / "bomb.zip", {"zeros.dcm": bytes(9 * 1024**2)})
    r = _post_zip(admin, bomb)
    assert r.status_code == 413 and "decompressed-size limit" in r.json()["detail"]
    link = tmp_path / "link.zip"
    with zipfile.ZipFile(link, "w") as zf:
        info = zipfile.ZipInfo("ct/IM0001")
        info.external_attr = 0o120777 << 16  # a symbolic link to /etc/passwd
        zf.writestr(info, "/etc/passwd")
    r = _post_zip(admin, link)
    assert r.status_code == 422 and "symbolic link" in r.json()["detail"]
    r = _post_zip(admin, zip_folder(tmp_path / "empty", tmp_path / "e.zip", {"a.txt": b"x"}))
    assert r.status_code == 422 and "no usable CT series" in r.json()["detail"]
    assert not (tmp_path.parent / "escape.dcm").exists()
    assert_nothing_left(live_app)


def test_keeping_originals_is_a_setting(live_app, admin, tmp_path, monkeypatch):
    keep = dataclasses.replace(live_app.settings, keep_dicom_originals=True)
    from app.services.curation import ingest_dicom

    seen = {}
    real = ingest_dicom._keep_original

    def spy(settings, source, created):
        seen["path"] = real(keep, source, created)
        return seen["path"]

    monkeypatch.setattr(ingest_dicom, "_keep_original", spy)
    r = _post_zip(admin, _study_zip(tmp_path))
    assert r.status_code == 201
    kept = live_app.settings.data_dir / seen["path"]
    assert kept.name == "original.zip" and zipfile.ZipFile(io.BytesIO(kept.read_bytes())).namelist()


def test_html_upload_of_a_zip_goes_to_the_first_series(live_app, admin, tmp_path):
    zipped = _study_zip(tmp_path)
    files = {"file": ("study.zip", zipped.read_bytes(), "application/zip")}
    r = admin.post("/volumes", files=files, headers={"HX-Request": "true"})
    assert r.status_code == 200 and r.headers["HX-Redirect"] == "/volumes/1"
    r = admin.post("/volumes", files=files, headers={"HX-Request": "true"})
    assert r.status_code == 409 and "already ingested as volume 1" in r.text
