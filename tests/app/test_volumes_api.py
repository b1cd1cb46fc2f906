"""The volumes API and pages over real HTTP: upload, slices, suggestions, bad input."""

from __future__ import annotations

import io
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from PIL import Image
from sqlalchemy import func, select

from app.db import session_scope
from app.models import Volume
from app.settings import Settings
from tests.app.nifti_files import corrupt_gzip, gzip_bytes, phantom_pair, save, truncated_gzip

LIMIT = 1024**2  # a 64×64×12 phantom is ~100 kB compressed


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    data = tmp_path / "data"
    s = Settings(
        data_dir=data,
        database_url=f"sqlite:///{data / 'medsynth.db'}",
        secret_key="test-secret-key",
        max_upload_bytes=LIMIT,
    )
    s.ensure_dirs()
    return s


@pytest.fixture
def pair(tmp_path):
    return phantom_pair(tmp_path, n=4, seed=2, tumours=2)


def upload(client, volume: Path, mask: Path | None = None, name: str | None = None):
    files = {"file": (name or volume.name, volume.read_bytes(), "application/gzip")}
    if mask is not None:
        files["mask"] = (mask.name, mask.read_bytes(), "application/gzip")
    return client.post("/api/volumes", files=files)


def assert_nothing_left(live_app):
    with session_scope(live_app.sessions) as s:
        assert s.scalar(select(func.count()).select_from(Volume)) == 0
    st = live_app.settings
    for folder in (st.uploads_dir, st.volumes_dir, st.tmp_dir):
        assert list(folder.iterdir()) == [], folder


def test_upload_then_browse_a_volume(live_app, admin, reader, pair):
    phantom, volume, mask = pair
    r = upload(admin, volume, mask)
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["name"] == "volume-4" and body["shape"] == [64, 64, 12] and body["has_mask"]
    assert body["num_slices"] == 12 and len(body["spacing"]) == 3
    assert body["hu_min"] == phantom.hu.min() and body["hu_max"] == phantom.hu.max()
    assert body["progress"] == {"approved": 0, "rejected": 0, "unreviewed": 12, "total": 12}
    vid = body["id"]
    assert [v["id"] for v in reader.get("/api/volumes").json()] == [vid]
    assert reader.get(f"/api/volumes/{vid}").json()["liver_slices"] == body["liver_slices"]
    liver = np.flatnonzero((phantom.labels > 0).any(axis=(0, 1))).tolist()
    assert reader.get(f"/api/volumes/{vid}/suggestions").json() == liver
    slices = reader.get(f"/api/volumes/{vid}/slices").json()
    assert [s["index"] for s in slices] == list(range(12)) and slices[0]["decision"] is None
    stored = list(live_app.settings.uploads_dir.rglob("*.nii.gz"))
    assert sorted(p.name for p in stored) == ["segmentation-4.nii.gz", "volume-4.nii.gz"]
    assert list(live_app.settings.tmp_dir.iterdir()) == []


def test_slice_png_in_each_window_and_with_the_mask_outline(live_app, admin, pair):
    phantom, volume, mask = pair
    vid = upload(admin, volume, mask).json()["id"]
    k = int(np.argmax((phantom.labels == 2).sum(axis=(0, 1))))
    for window in ("liver", "abdomen", "bone", "lung", "mediastinum", "400,40"):
        r = admin.get(f"/api/volumes/{vid}/slices/{k}.png", params={"window": window})
        assert r.status_code == 200 and r.headers["content-type"] == "image/png"
        assert "max-age" in r.headers["cache-control"]
        img = Image.open(io.BytesIO(r.content))
        assert img.mode == "L" and img.size == (64, 64)
    plain = np.asarray(
        Image.open(io.BytesIO(admin.get(f"/api/volumes/{vid}/slices/{k}.png").content))
    )
    r = admin.get(f"/api/volumes/{vid}/slices/{k}.png", params={"overlay": "mask"})
    rgb = np.asarray(Image.open(io.BytesIO(r.content)).convert("RGB")).astype(int)
    assert rgb.shape == (64, 64, 3)
    coloured = rgb[..., 0] != rgb[..., 1]
    assert coloured.any()  # liver and tumour outlines
    assert np.abs(rgb[~coloured][:, 0] - plain[~coloured]).max() <= 1  # 254 gray levels
    # radiological display: the liver (patient's right) lies in the left half of the image
    assert np.nonzero(coloured)[1].mean() < 32


# One live server per test is the slow part, so the cases below share a test each.
BAD_REQUESTS = [
    ("/api/volumes/1/slices/12.png", 404, "slices 0 to 11"),
    ("/api/volumes/1/slices/-1.png", 404, "slice -1 does not exist"),
    ("/api/volumes/1/slices/3.png?window=brain", 422, "bad window 'brain'"),
    ("/api/volumes/1/slices/3.png?window=0,40", 422, "width must be"),
    ("/api/volumes/1/slices/3.png?overlay=labels", 422, "overlay must be 'mask'"),
    ("/api/volumes/1/slices/x.png", 422, "index"),
    ("/api/volumes/99", 404, "no volume with id 99"),
    ("/api/volumes/99/suggestions", 404, "no volume with id 99"),
]


def test_bad_slice_requests_say_what_is_wrong(live_app, admin, pair):
    upload(admin, pair[1], pair[2])
    for path, status, words in BAD_REQUESTS:
        r = admin.get(path)
        assert r.status_code == status and words in r.json()["detail"], (path, r.text)


def test_login_is_required_and_upload_is_for_admins(live_app, reader, pair):
    with live_app.client(None) as anonymous:
        assert anonymous.get("/api/volumes").status_code == 401
        assert anonymous.get("/api/volumes/1/slices/0.png").status_code == 401
    r = upload(reader, pair[1])
    assert r.status_code == 403 and "admin" in r.json()["detail"]
    assert_nothing_left(live_app)


def _broken(kind: str, pair, d: Path) -> tuple[Path, Path | None]:
    volume = pair[1]
    text = b"this is not an image\n" * 40
    return {
        "truncated": lambda: (truncated_gzip(volume, d / "t.nii.gz"), None),
        "corrupt": lambda: (corrupt_gzip(volume, d / "c.nii.gz"), None),
        "not_nifti": lambda: ((d / "n.nii").write_bytes(text) and d / "n.nii", None),
        "not_nifti_gz": lambda: (gzip_bytes(text, d / "n.nii.gz"), None),
        "2d": lambda: (save(d / "flat.nii.gz", np.zeros((32, 32), np.int16)), None),
        "5d": lambda: (save(d / "five.nii.gz", np.zeros((8, 8, 4, 1, 2), np.int16)), None),
        "4d": lambda: (save(d / "time.nii.gz", np.zeros((8, 8, 4, 3), np.int16)), None),
        "mask_shape": lambda: (volume, save(d / "m.nii.gz", np.zeros((64, 64, 5), np.uint8))),
        "mask_values": lambda: (
            volume,
            save(d / "m.nii.gz", np.full((64, 64, 12), 7, np.uint8), nib.load(volume).affine),
        ),
    }[kind]()


BAD_UPLOADS = [
    ("truncated", "gzip stream truncated"),
    ("corrupt", "corrupt"),
    ("not_nifti", "is not a NIfTI file"),
    ("not_nifti_gz", "is not a NIfTI file"),
    ("2d", "2D image"),
    ("5d", "5D image"),
    ("4d", "3 volumes along the 4th axis"),
    ("mask_shape", "does not match volume"),
    ("mask_values", "values other than 0, 1, 2"),
]


def test_bad_uploads_are_422_with_detail_and_leave_nothing(live_app, admin, pair, tmp_path):
    for kind, words in BAD_UPLOADS:
        volume, mask = _broken(kind, pair, tmp_path)
        r = upload(admin, volume, mask)
        assert r.status_code == 422 and words in r.json()["detail"], (kind, r.text)
        assert_nothing_left(live_app)


def test_oversize_upload_is_413_with_the_limit_and_leaves_nothing(live_app, admin, tmp_path):
    big = tmp_path / "big.nii"
    big.write_bytes(np.random.default_rng(0).bytes(LIMIT + 200_000))
    r = admin.post("/api/volumes", files={"file": ("big.nii", big.read_bytes())})
    assert r.status_code == 413 and "limit of 1.0 MiB" in r.json()["detail"]
    assert_nothing_left(live_app)


BAD_NAMES = [
    ("../../evil.nii.gz", "contains a path"),
    ("/etc/evil.nii.gz", "contains a path"),
    ("..\\..\\evil.nii.gz", "contains a path"),
    (".hidden.nii.gz", "starts with a dot"),
    ("volume.txt", "only .nii and .nii.gz"),
]


def test_unsafe_or_wrong_file_names_are_rejected(live_app, admin, pair, tmp_path):
    for name, words in BAD_NAMES:
        r = upload(admin, pair[1], name=name)
        assert r.status_code == 422 and words in r.json()["detail"], (name, r.text)
        assert not list(tmp_path.parent.rglob("evil*"))  # nothing written, inside or outside
        assert_nothing_left(live_app)


def test_upload_needs_a_file_part(live_app, admin):
    r = admin.post("/api/volumes", data={"note": "no file"}, files={"other": ("a.nii", b"x")})
    assert r.status_code == 422 and "unexpected file field 'other'" in r.json()["detail"]
    r = admin.post("/api/volumes", content=b"{}", headers={"content-type": "application/json"})
    assert r.status_code == 422 and "multipart/form-data" in r.json()["detail"]
    assert_nothing_left(live_app)


def test_pages_list_and_viewer_with_htmx_partials(live_app, admin, pair):
    vid = upload(admin, pair[1], pair[2]).json()["id"]
    page = admin.get("/volumes")
    assert page.status_code == 200 and "volume-4" in page.text and 'name="mask"' in page.text
    viewer = admin.get(f"/volumes/{vid}", params={"slice": 6, "window": "bone"})
    assert viewer.status_code == 200 and "<html" in viewer.text
    assert 'id="slice-canvas"' in viewer.text and '"index": 6' in viewer.text
    assert 'id="slice-slider"' in viewer.text and "/static/js/viewer.js" in viewer.text
    assert "Slice <b id=\"hud-slice\">7</b> / 12" in viewer.text  # 1-based for people
    htmx = {"HX-Request": "true"}
    part = admin.get(f"/volumes/{vid}/slices/7/panel", headers=htmx)
    assert part.status_code == 200 and "<html" not in part.text and 'id="review"' in part.text
    assert 'data-slice="7"' in part.text and "Slice 8" in part.text
    assert "HX-Request" in part.headers["Vary"]
    r = admin.post(
        f"/volumes/{vid}/slices/7/review",
        data={"decision": "rejected", "label": "normal", "note": "blurred"},
        headers=htmx,
    )
    assert r.status_code == 200 and 'id="review"' in r.text and "REJECTED" in r.text
    assert 'id="progress" class="vprogress" hx-swap-oob="true"' in r.text
    assert "1 rejected" in r.text and "blurred" in r.text
    bad = admin.post(
        f"/volumes/{vid}/slices/70/review", data={"decision": "approved"}, headers=htmx
    )
    assert bad.status_code == 404 and "slices 0 to 11" in bad.json()["detail"]


def test_upload_form_redirects_to_the_viewer(live_app, admin, reader, pair, tmp_path):
    files = {
        "file": (pair[1].name, pair[1].read_bytes()),
        "mask": (pair[2].name, pair[2].read_bytes()),
    }
    r = admin.post("/volumes", files=files, headers={"HX-Request": "true"})
    assert r.status_code == 200 and r.headers["HX-Redirect"] == "/volumes/1"
    r = admin.post("/volumes", files=files, headers={"HX-Request": "true"})  # the same again
    assert r.status_code == 409 and "already ingested as volume 1" in r.text
    other = phantom_pair(tmp_path / "other", n=5, seed=3)[1]
    files = {"file": (other.name, other.read_bytes())}
    r = admin.post("/volumes", files=files, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/volumes/2"
    r = reader.post("/volumes", files=files, headers={"HX-Request": "true"})
    assert r.status_code == 403 and "admin" in r.json()["detail"]
    assert "Upload and ingest" not in reader.get("/volumes").text
