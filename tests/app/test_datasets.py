"""Dataset versions over HTTP: freeze validation, JSON, zip download, thumbnails, pages."""

from __future__ import annotations

import io
import json
import re
import zipfile

import pytest
from PIL import Image
from sqlalchemy import select

from app.db import session_scope
from app.models import AuditEvent, DatasetVersion
from app.services.curation.demo import create_demo
from app.services.curation.reviews import add_review
from tests.app.curation_data import curated, user
from tests.app.sessions import browser, page_token

FREEZE = {"name": "liver-64", "resolution": 64, "window": "liver", "bit_depth": 8}


@pytest.fixture
def curated_app(live_app):
    with session_scope(live_app.sessions) as s:
        curated(s, live_app.settings)
    return live_app


def test_freeze_without_approved_slices_is_a_clear_409(admin):
    r = admin.post("/api/datasets", json=FREEZE)
    assert r.status_code == 409 and "no approved slices" in r.json()["detail"]


BAD_FREEZES = [
    ({"name": "  "}, "name must not be empty"),
    ({"resolution": 100}, "power of two from 16 to 1024"),
    ({"resolution": 2048}, "power of two from 16 to 1024"),
    ({"resolution": 8}, "got 8"),
    ({"resolution": "big"}, "resolution"),
    ({"window": "brain"}, "bad window 'brain'"),
    ({"window": "0,40"}, "width must be"),
    ({"bit_depth": 12}, "bit_depth must be 8 or 16"),
    ({"name": None}, "name"),
]


def test_freeze_validation_says_what_is_wrong(curated_app, admin):
    for change, words in BAD_FREEZES:
        r = admin.post("/api/datasets", json={**FREEZE, **change})
        assert r.status_code == 422 and words in r.json()["detail"], (change, r.text)
    with session_scope(curated_app.sessions) as s:
        assert s.scalar(select(DatasetVersion)) is None
    assert not list(curated_app.settings.datasets_dir.iterdir())  # nothing left behind


def test_freeze_list_get_download_and_thumbnails(curated_app, reader):
    r = reader.post("/api/datasets", json=FREEZE)  # any logged-in user may freeze
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["num_images"] == 3 and body["num_tumour"] == 1 and len(body["content_hash"]) == 64
    assert [it["slice_index"] for it in body["items"]] == [1, 2, 4]
    assert body["items"][0] == {
        "position": 0,
        "file": "img00000000.png",
        "volume_id": 1,
        "slice_index": 1,
        "label": "tumour",
        "review_id": body["items"][0]["review_id"],
    }
    dataset_id = body["id"]
    assert [d["id"] for d in reader.get("/api/datasets").json()] == [dataset_id]
    assert reader.get(f"/api/datasets/{dataset_id}").json() == body

    z = reader.get(f"/api/datasets/{dataset_id}/export.zip")
    assert z.status_code == 200 and z.headers["content-type"] == "application/zip"
    assert f'filename="medsynth-{dataset_id}-liver-64.zip"' in z.headers["content-disposition"]
    with zipfile.ZipFile(io.BytesIO(z.content)) as zf:
        assert json.loads(zf.read("medsynth.json"))["content_hash"] == body["content_hash"]
        second_png = zf.read("img00000001.png")

    t = reader.get(f"/api/datasets/{dataset_id}/thumbs/1.png")
    assert t.status_code == 200 and t.content == second_png
    assert t.headers["content-type"] == "image/png" and "immutable" in t.headers["cache-control"]
    assert Image.open(io.BytesIO(t.content)).size == (64, 64)
    assert reader.get(f"/api/datasets/{dataset_id}/thumbs/3.png").status_code == 404
    assert reader.get("/api/datasets/99").status_code == 404

    with session_scope(curated_app.sessions) as s:
        event = s.scalars(select(AuditEvent).where(AuditEvent.action == "dataset.freeze")).one()
        assert event.target == f"dataset:{dataset_id}" and event.detail["num_images"] == 3
        assert event.user_id == user(s, "reader1").id


def test_a_missing_zip_is_rebuilt_identically(curated_app, admin):
    dataset_id = admin.post("/api/datasets", json=FREEZE).json()["id"]
    path = curated_app.settings.datasets_dir / f"dataset-{dataset_id:06d}.zip"
    original = path.read_bytes()
    path.unlink()
    assert admin.get(f"/api/datasets/{dataset_id}/export.zip").content == original


def test_pages_show_counts_freeze_form_and_grid(curated_app):
    with browser(curated_app.url, "reader2") as c:
        page = c.get("/datasets")
        assert page.status_code == 200
        assert re.search(r'big-number">3</span> slices to freeze', page.text)
        assert "1 tumour" in page.text and "2 normal" in page.text
        assert "Any logged-in user may freeze" in page.text
        form = {
            "name": "from the form",
            "resolution": "32",
            "window": "custom",
            "custom_window": "400,50",
            "bit_depth": "16",
            "volume_ids": "1",
        }
        token = page_token(page.text)
        r = c.post("/datasets", data=form)
        assert r.status_code == 403  # the form needs its CSRF token
        r = c.post("/datasets", data={**form, "csrf_token": token})
        assert r.status_code == 303 and r.headers["location"] == "/datasets/1"
        r = c.post("/datasets", data=form, headers={"HX-Request": "true", "X-CSRF-Token": token})
        assert r.status_code == 204 and r.headers["HX-Redirect"] == "/datasets/2"
        bad = c.post(
            "/datasets",
            data={**form, "resolution": "48"},
            headers={"HX-Request": "true", "X-CSRF-Token": token},
        )
        assert bad.status_code == 422 and "power of two" in bad.json()["detail"]

        detail = c.get("/datasets/1")
        assert detail.status_code == 200 and "from the form" in detail.text
        assert detail.text.count('src="/api/datasets/1/thumbs/') == 3
        assert "400,50" in detail.text and "16-bit" in detail.text
        assert 'href="/api/datasets/1/export.zip"' in detail.text
        with session_scope(curated_app.sessions) as s:
            assert s.get(DatasetVersion, 1).content_hash in detail.text
        listing = c.get("/datasets").text
        assert "from the form" in listing and listing.count('href="/datasets/') == 2
        assert c.get("/datasets/9").status_code == 404


def test_freeze_from_an_ingested_demo_volume_in_hu_mode(live_app, admin):
    with session_scope(live_app.sessions) as s:
        (volume,) = create_demo(s, live_app.settings, volumes=1, seed=0, size=64)
        liver = [sl.index for sl in volume.slices if sl.liver_pixels][:4]
        for index in liver:
            add_review(s, volume, index, user(s, "reader1"), "approved")
        sha = volume.source_sha256
    r = admin.post("/api/datasets", json={**FREEZE, "window": "HU", "bit_depth": 16})
    assert r.status_code == 201, r.text
    z = admin.get(f"/api/datasets/{r.json()['id']}/export.zip")
    with zipfile.ZipFile(io.BytesIO(z.content)) as zf:
        meta = json.loads(zf.read("medsynth.json"))
        image = Image.open(io.BytesIO(zf.read("img00000000.png")))
        assert image.mode == "I;16" and image.size == (64, 64)
    assert meta["window"]["name"] == "hu" and meta["hu_mapping"] == {"lo": -1024.0, "hi": 3071.0}
    assert [im["slice_index"] for im in meta["images"]] == liver
    assert {im["source_sha256"] for im in meta["images"]} == {sha}
