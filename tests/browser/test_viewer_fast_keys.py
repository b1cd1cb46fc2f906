"""Fast keyboard review on a slow server (issue 22 item 1): with "then go to the next slice"
ticked, 50 alternating a / r keys 50 ms apart end with exactly the decisions pressed, each on
the slice that was on screen, one row each."""

from __future__ import annotations

import dataclasses
import time

import pytest

from app.db import session_scope
from app.services.curation.demo import create_demo
from tests.browser.conftest import login

pytestmark = pytest.mark.browser
SHOWN = "(n) => document.querySelector('#stage').dataset.shown === String(n)"
START, KEYS = 5, 50


@pytest.fixture
def settings(settings):
    """The app answers every review request 300 ms late, as on a loaded machine."""
    return dataclasses.replace(settings, review_delay_ms=300)


def _all_reviews(app) -> list[dict]:
    with app.client("admin") as c:
        rows = []
        for index in range(START - 1, START + KEYS + 1):
            rows += c.get(f"/api/volumes/1/slices/{index}/reviews").json()
        return rows


def test_fifty_alternating_keys_land_on_their_own_slices(live_app, page_without_csp):
    page = page_without_csp
    with session_scope(live_app.sessions) as s:
        create_demo(s, live_app.settings, volumes=1, seed=0, size=64)
    login(page, live_app, "reader1")
    page.goto(f"{live_app.url}/volumes/1?slice={START}")
    page.wait_for_function(SHOWN, arg=START)
    page.check("#advance")
    for k in range(KEYS):
        page.keyboard.press("a" if k % 2 == 0 else "r")
        page.wait_for_timeout(50)
    assert page.locator("#hud-slice").inner_text() == str(START + KEYS + 1)  # moved on at once

    deadline = time.monotonic() + 180  # the slowed server works through the queue
    while len(_all_reviews(live_app)) < KEYS and time.monotonic() < deadline:
        time.sleep(0.5)
    page.wait_for_function("document.querySelector('#viewer').dataset.queued === '0'")
    rows = _all_reviews(live_app)
    stored = sorted((r["slice_index"], r["decision"]) for r in rows)
    pressed = [(START + k, "approved" if k % 2 == 0 else "rejected") for k in range(KEYS)]
    assert stored == pressed  # one row per key, on its own slice, nothing else
    assert {r["user"] for r in rows} == {"reader1"}
    counts = page.locator("#progress .counts").inner_text()
    assert "25 approved" in counts and "25 rejected" in counts
    cells = page.locator("#vmap i")
    assert "approved" in cells.nth(START).get_attribute("class")
    assert "rejected" in cells.nth(START + 1).get_attribute("class")
    assert "pending" not in cells.nth(START + KEYS - 1).get_attribute("class")


def test_a_repeated_key_on_one_slice_stores_one_row(live_app, page_without_csp):
    page = page_without_csp
    with session_scope(live_app.sessions) as s:
        create_demo(s, live_app.settings, volumes=1, seed=0, size=64)
    login(page, live_app, "reader1")
    page.goto(f"{live_app.url}/volumes/1?slice={START}")
    page.wait_for_function(SHOWN, arg=START)
    page.uncheck("#advance")
    for _ in range(6):
        page.keyboard.press("a")
        page.wait_for_timeout(50)
    page.keyboard.press("r")  # a change of mind after the repeats: stored, on the same slice
    page.wait_for_function("document.querySelector('#viewer').dataset.queued === '0'")
    page.wait_for_function(
        "document.querySelector('#review .state-card').classList.contains('rejected')"
    )
    with live_app.client("reader1") as c:
        history = c.get(f"/api/volumes/1/slices/{START}/reviews").json()
    assert [h["decision"] for h in history] == ["rejected", "approved"]
