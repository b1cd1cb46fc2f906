"""Error responses over real HTTP (issue 21 item 8): no route answers 500 to a well-formed
request, and every error (401, 403, 404, 405, 422, 429 and a real server fault's 500) carries
the same security headers as a page."""

from __future__ import annotations

import re
from pathlib import Path

from fastapi.routing import APIRoute

from app.db import session_scope
from app.main import create_app
from app.models import Volume
from tests.app.curation_data import add_volume, off_centre_body
from tests.app.route_walk import all_routes

SECURITY = ("content-security-policy", "x-frame-options", "x-content-type-options",
            "referrer-policy")  # fmt: skip
# a well-formed value for every string path parameter of a GET route
VALUES = {"plane": "coronal", "which": "real", "token": "a" * 32, "name": "seed0000.png",
          "username": "reader1", "action": "activate", "k": "0", "index": "2",
          "position": "0", "part": ""}  # fmt: skip


def _volume(live_app) -> int:
    with session_scope(live_app.sessions) as session:
        return add_volume(session, live_app.settings, off_centre_body(), "vol-h").id


def _has_headers(r) -> bool:
    return all(h in r.headers for h in SECURITY) and r.headers["x-frame-options"] == "DENY"


def test_review_panel_without_htmx_opens_the_viewer(live_app, admin):
    vid = _volume(live_app)
    r = admin.get(f"/volumes/{vid}/slices/2/panel", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == f"/volumes/{vid}?slice=2"
    page = admin.get(f"/volumes/{vid}/slices/2/panel", follow_redirects=True)
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    partial = admin.get(f"/volumes/{vid}/slices/2/panel", headers={"HX-Request": "true"})
    assert partial.status_code == 200 and "<html" not in partial.text


def test_no_get_route_answers_500_to_a_well_formed_request(live_app, admin):
    vid = _volume(live_app)
    app = create_app(live_app.settings)
    urls = []
    for route in all_routes(app.routes):
        if not isinstance(route, APIRoute) or "GET" not in route.methods:
            continue
        fill = lambda m: VALUES.get(m.group(1), str(vid))  # noqa: E731  (ids: the volume's)
        urls.append(re.sub(r"{(\w+)(?::\w+)?}", fill, route.path))
    assert len(urls) > 60
    for url in urls:
        for headers in ({}, {"HX-Request": "true"}):
            r = admin.get(url, headers=headers, follow_redirects=False)
            assert r.status_code < 500, (url, headers, r.status_code, r.text[:300])
            assert _has_headers(r), url


def test_every_error_response_carries_the_security_headers(live_app, admin):
    vid = _volume(live_app)
    with live_app.client("reader1") as reader, live_app.client(None) as anonymous:
        errors = {
            401: anonymous.get("/api/volumes"),
            403: reader.post("/api/users", json={"username": "x", "role": "admin"}),
            404: admin.get("/api/volumes/999999"),
            405: admin.delete("/api/volumes"),
            422: admin.get(f"/api/volumes/{vid}/slices/0.png?window=nonsense"),
            429: admin.get("/api/snapshots/1/generate.zip?seeds=0-99"),
        }
        page_404 = admin.get("/no/such/page")
    for status, r in errors.items():
        assert r.status_code == status, (status, r.status_code, r.text)
        assert _has_headers(r), (status, dict(r.headers))
    assert page_404.status_code == 404 and _has_headers(page_404)
    # a real server fault, which no handler maps: the volume's cached array is gone
    with session_scope(live_app.sessions) as session:
        Path(session.get(Volume, vid).cache_path).unlink()
    r = admin.get(f"/api/volumes/{vid}/slices/1.png")
    assert r.status_code == 500 and _has_headers(r), (r.status_code, dict(r.headers))
    assert "logged for an admin" in r.json()["detail"] and "Traceback" not in r.text
    assert admin.get("/api/volumes").status_code == 200  # the client goes on, a new connection
