"""The start page: counts from the latest review per slice, recent activity, links onward."""

from __future__ import annotations

import re

from app.db import session_scope
from tests.app.curation_data import add_volume, off_centre_body, review
from tests.app.sessions import browser


def _numbers(html: str) -> dict[str, int]:
    pairs = re.findall(r'stat-value">(\d+)</span>\s*<span class="stat-label">([^<]+)<', html)
    return {label: int(n) for n, label in pairs}


def test_home_needs_login(live_app):
    with browser(live_app.url) as c:
        r = c.get("/")
        assert r.status_code == 303 and r.headers["location"] == "/login?next=/"


def test_empty_home_points_to_the_first_step(live_app):
    with browser(live_app.url, "reader1") as c:
        r = c.get("/")
    assert r.status_code == 200
    assert _numbers(r.text) == {"volumes": 0, "approved": 0, "rejected": 0, "dataset versions": 0}
    assert "Upload a CT volume" in r.text
    assert "logged in" in r.text  # the login itself is the first activity


def test_home_counts_the_latest_decision_per_slice(live_app):
    with session_scope(live_app.sessions) as s:
        vol = add_volume(s, live_app.settings, off_centre_body(shape=(32, 32, 5)), "phantom-a")
        review(s, vol, 0, "reader1", "approved")
        review(s, vol, 0, "reader2", "rejected")  # changed mind: latest wins
        review(s, vol, 1, "reader1", "approved", "tumour")
        review(s, vol, 2, "reader2", "approved")
        review(s, vol, 3, "reader1", "rejected")
        review(s, vol, 3, "reader1", "approved")
    with browser(live_app.url, "admin") as c:
        html = c.get("/").text
    assert _numbers(html) == {"volume": 1, "approved": 3, "rejected": 1, "dataset versions": 0}
    assert "5 axial slices" in html and "1 not reviewed yet" in html
    assert "1 tumour · 2 normal" in html
    assert "approved slice 2 of phantom-a (tumour)" in html  # 1-based, as the viewer
    assert 'href="/volumes/1?slice=1"' in html and 'href="/datasets"' in html
