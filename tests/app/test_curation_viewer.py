"""The viewer's small endpoints: raw slice blocks, the HU probe, reformats, presets,
reviewer assignment and agreement, and the review form's refusals."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from app.db import session_scope
from app.imaging.render import axial_display
from app.services.curation.demo import create_demo
from app.services.curation.volumes import mask_array, volume_array
from tests.app.curation_data import review, user
from tests.app.sessions import browser, page_token


@pytest.fixture
def demo(live_app):
    with session_scope(live_app.sessions) as s:
        vol = create_demo(s, live_app.settings, volumes=1, seed=0, size=64)[0]
        hu = np.array(volume_array(live_app.settings, vol))
        labels = np.array(mask_array(live_app.settings, vol))
        return vol.id, hu, labels, vol.affine


def test_raw_block_is_the_display_slices_then_the_masks(demo, reader):
    vid, hu, labels, _ = demo
    n = hu.shape[2]
    r = reader.get(f"/api/volumes/{vid}/slices/{n - 3}.raw", params={"count": 8, "mask": True})
    assert r.status_code == 200 and r.headers["X-Count"] == "3"  # cut at the end
    rows, cols = int(r.headers["X-Rows"]), int(r.headers["X-Cols"])
    area = rows * cols
    got = np.frombuffer(r.content[: 3 * 2 * area], "<i2").reshape(3, rows, cols)
    masks = np.frombuffer(r.content[3 * 2 * area :], np.uint8).reshape(3, rows, cols)
    for k in range(3):
        assert np.array_equal(got[k], axial_display(hu, n - 3 + k))
        assert np.array_equal(masks[k], axial_display(labels, n - 3 + k))
    assert reader.get(f"/api/volumes/{vid}/slices/0.raw?count=99").status_code == 422
    assert reader.get(f"/api/volumes/{vid}/slices/{n}.raw").status_code == 404


def test_probe_gives_hu_position_and_label_of_the_voxel(demo, reader):
    vid, hu, labels, affine = demo
    k = int(np.argmax((labels == 1).sum(axis=(0, 1))))
    display = axial_display(labels, k)
    row, col = (int(v) for v in np.argwhere(display == 1)[0])
    p = reader.get(f"/api/volumes/{vid}/slices/{k}/probe", params={"row": row, "col": col})
    assert p.status_code == 200, p.text
    body = p.json()
    assert body["hu"] == int(axial_display(hu, k)[row, col]) and body["label"] == "liver"
    i, j, kk = body["voxel"]
    assert kk == k and int(hu[i, j, k]) == body["hu"]
    expected = np.asarray(affine) @ np.array([i, j, k, 1.0])
    assert np.allclose(body["position_mm"], expected[:3], atol=0.01)
    bad = reader.get(f"/api/volumes/{vid}/slices/{k}/probe", params={"row": 64, "col": 0})
    assert bad.status_code == 422 and "row must be 0..63" in bad.json()["detail"]


def test_reformats_are_superior_up_with_the_right_aspect(demo, reader):
    vid, hu, _, _ = demo
    for plane in ("coronal", "sagittal"):
        r = reader.get(f"/api/volumes/{vid}/reformat/{plane}.png", params={"window": "200,90"})
        assert r.status_code == 200, r.text
        image = Image.open(io.BytesIO(r.content))
        assert image.size == (64, hu.shape[2])  # columns x or y, rows z
    assert reader.get(f"/api/volumes/{vid}/reformat/oblique.png").status_code == 404
    assert reader.get(f"/api/volumes/{vid}/reformat/coronal.png?at=64").status_code == 422


def test_user_presets_and_default_window(demo, reader):
    vid = demo[0]
    assert reader.get("/api/viewer/settings").json() == {"default_window": None, "presets": []}
    mine = {"default_window": "soft", "presets": [{"name": "soft", "width": 350, "level": 40}]}
    r = reader.put("/api/viewer/settings", json=mine)
    assert r.status_code == 200 and r.json() == {
        "default_window": "soft",
        "presets": [{"name": "soft", "width": 350.0, "level": 40.0}],
    }
    page = reader.get(f"/volumes/{vid}")
    assert 'value="soft" data-width="350.0" data-level="40.0" checked' in page.text
    assert "W 350 · L 40" in page.text  # the viewer opens with the user's default
    for bad, words in (
        ({"presets": [{"name": "liver", "width": 1, "level": 1}]}, "built-in"),
        ({"default_window": "nope"}, "not a preset"),
        ({"presets": [{"name": "x", "width": 0, "level": 1}]}, "width"),
    ):
        r = reader.put("/api/viewer/settings", json=bad)
        assert r.status_code == 422 and words in r.json()["detail"], r.text


def test_portal_venous_preset_is_offered(demo, reader):
    page = reader.get(f"/volumes/{demo[0]}", params={"window": "liver-pv"}).text
    assert 'value="liver-pv" data-width="200" data-level="90"' in page
    assert "W 200 · L 90" in page


def test_assigned_reviewers_and_their_agreement(demo, live_app, admin, reader):
    vid = demo[0]
    assert reader.put(f"/api/volumes/{vid}/reviewers", json={"reviewers": []}).status_code == 403
    r = admin.put(f"/api/volumes/{vid}/reviewers", json={"reviewers": ["reader1", "reader2"]})
    assert r.status_code == 200 and r.json()["reviewers"] == ["reader1", "reader2"]
    assert admin.get(f"/api/volumes/{vid}").json()["reviewers"] == ["reader1", "reader2"]
    bad = admin.put(f"/api/volumes/{vid}/reviewers", json={"reviewers": ["ghost"]})
    assert bad.status_code == 404 and "ghost" in bad.json()["detail"]
    with session_scope(live_app.sessions) as s:
        from app.services.curation.volumes import get_volume

        vol = get_volume(s, vid)
        review(s, vol, 3, "reader1", "approved", "tumour")
        review(s, vol, 3, "reader2", "rejected")
        assert user(s, "reader1") is not None
    a = reader.get(f"/api/volumes/{vid}/slices/3/agreement").json()
    assert a["reviewers"] == 2 and a["approved"] == 1 and not a["unanimous"]
    panel = reader.get(f"/volumes/{vid}/slices/3/panel", headers={"HX-Request": "true"}).text
    assert "1 of 2</b> reviewers approve" in panel and "disagree" in panel
    slices = reader.get(f"/api/volumes/{vid}/slices").json()
    assert slices[3]["reviewers"] == 2 and slices[3]["approvals"] == 1


def test_review_form_without_a_decision_stores_nothing(demo, live_app):
    """Enter in the note field submits no decision: a clear 422, no row."""
    vid = demo[0]
    with browser(live_app.url, "reader1") as c:
        token = page_token(c.get(f"/volumes/{vid}").text)
        r = c.post(
            f"/volumes/{vid}/slices/2/review",
            data={"note": "why I reject", "label": "normal"},
            headers={"HX-Request": "true", "X-CSRF-Token": token},
        )
        assert r.status_code == 422 and "nothing was stored" in r.json()["detail"]
        assert c.get(f"/api/volumes/{vid}/slices/2/reviews").json() == []


def test_expired_session_post_returns_to_the_viewer_page_not_the_post_url(demo, live_app):
    """The login's `next` is the page the POST came from (a GET), never the POST URL."""
    import httpx

    vid = demo[0]
    page = f"{live_app.url}/volumes/{vid}?slice=5"
    with httpx.Client(base_url=live_app.url) as anon:
        r = anon.post(
            f"/volumes/{vid}/slices/5/review",
            data={"decision": "approved"},
            headers={"HX-Request": "true", "HX-Current-URL": page},
        )
        assert r.status_code == 204
        assert r.headers["HX-Redirect"] == f"/login?next=/volumes/{vid}%3Fslice%3D5"


def test_admin_assigns_reviewers_with_the_viewer_form(demo, live_app):
    vid = demo[0]
    with browser(live_app.url, "admin") as c:
        page = c.get(f"/volumes/{vid}").text
        assert 'name="reviewers" value="reader2"' in page
        r = c.post(
            f"/volumes/{vid}/reviewers",
            data={"reviewers": ["reader2"], "csrf_token": page_token(page)},
        )
        assert r.status_code == 303 and r.headers["location"] == f"/volumes/{vid}"
        assert "reviewers: reader2" in c.get(f"/volumes/{vid}").text
    with browser(live_app.url, "reader1") as c:
        assert 'name="reviewers"' not in c.get(f"/volumes/{vid}").text
