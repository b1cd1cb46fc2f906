"""The viewer handled like a PACS in a real browser: wheel scrolling, drag W/L, the HU probe,
Enter in the note, and a decision made after the session expired."""

from __future__ import annotations

import re

import numpy as np
import pytest

from app.db import session_scope
from app.imaging.render import axial_display
from app.services.curation.demo import create_demo
from app.services.curation.volumes import volume_array
from tests.browser.conftest import login

pytestmark = pytest.mark.browser
SHOWN = "(n) => document.querySelector('#stage').dataset.shown === String(n)"


@pytest.fixture
def page(browser):
    """The app's CSP forbids eval; Playwright's predicates need it, so bypass it here."""
    context = browser.new_context(viewport={"width": 1280, "height": 900}, bypass_csp=True)
    pg = context.new_page()
    pg.set_default_timeout(15_000)
    yield pg
    context.close()


@pytest.fixture
def demo(live_app):
    with session_scope(live_app.sessions) as s:
        vol = create_demo(s, live_app.settings, volumes=1, seed=0, size=64)[0]
        return vol.id, np.array(volume_array(live_app.settings, vol))


def _canvas_point(page, row: int, col: int, rows: int = 64, cols: int = 64) -> tuple[float, float]:
    """Screen position of a display pixel's centre (the image is letterboxed in the stage)."""
    box = page.locator("#slice-canvas").bounding_box()
    s = min(box["width"] / cols, box["height"] / rows)
    x0 = box["x"] + (box["width"] - cols * s) / 2
    y0 = box["y"] + (box["height"] - rows * s) / 2
    return x0 + (col + 0.5) * s, y0 + (row + 0.5) * s


def test_wheel_drag_window_and_probe(live_app, page, demo):
    vid, hu = demo
    login(page, live_app, "reader1")
    page.goto(f"{live_app.url}/volumes/{vid}?slice=2")
    page.wait_for_function(SHOWN, arg=2)
    assert page.locator("#hud-slice").inner_text() == "3"  # 1-based for people
    assert page.evaluate("document.documentElement.scrollWidth") <= 1280  # no sideways scroll

    page.mouse.move(*_canvas_point(page, 32, 32))
    for _ in range(20):
        page.mouse.wheel(0, 100)
    page.wait_for_function(SHOWN, arg=22)
    assert page.locator("#hud-slice").inner_text() == "23"
    assert page.locator("#slice-out").inner_text() == f"23 / {hu.shape[2]}"

    before = page.evaluate("document.querySelector('#slice-canvas').toDataURL()")
    x, y = _canvas_point(page, 32, 32)
    page.mouse.move(x, y)
    page.mouse.down()
    page.mouse.move(x + 60, y + 30, steps=4)
    page.mouse.up()
    after = page.evaluate("document.querySelector('#slice-canvas').toDataURL()")
    assert after != before
    assert page.locator("input[name=ww]").input_value() == "270"  # 150 + 2·60
    assert page.locator("input[name=wl]").input_value() == "90"  # 30 + 2·30
    assert page.locator("input[name=window][value=custom]").is_checked()

    row, col = 30, 20
    page.mouse.move(*_canvas_point(page, row, col))
    page.wait_for_function(
        f"() => (document.querySelector('#stage').dataset.probe || '').includes('\"row\":{row},')"
    )
    probe = page.evaluate("JSON.parse(document.querySelector('#stage').dataset.probe)")
    assert probe["col"] == col and probe["voxel"][2] == 22
    assert probe["hu"] == int(axial_display(hu, 22)[row, col])
    shown = page.locator("#hud-probe").inner_text()
    assert shown.startswith(f"{probe['hu']} HU") and shown.endswith(") mm")

    page.mouse.click(*_canvas_point(page, row, col))  # reformats through the clicked point
    page.wait_for_function("document.querySelector('#plane-coronal').src.includes('&at=33')")
    assert "&at=43" in page.locator("#plane-sagittal").get_attribute("src")  # x = 63 − 20


def test_enter_in_the_note_does_not_approve(live_app, page, demo):
    vid, _ = demo
    login(page, live_app, "reader1")
    page.goto(f"{live_app.url}/volumes/{vid}?slice=5")
    page.fill("#note", "partial volume at the dome")
    page.press("#note", "Enter")
    page.wait_for_timeout(500)
    assert live_app.client("reader1").get(f"/api/volumes/{vid}/slices/5/reviews").json() == []
    assert "NOT REVIEWED" in page.locator("#review .state-card").inner_text()
    page.click("#review-form button[value=rejected]")  # the button still decides, with the note
    page.wait_for_function(
        "document.querySelector('#review .state-card').classList.contains('rejected')"
    )
    (stored,) = live_app.client("reader1").get(f"/api/volumes/{vid}/slices/5/reviews").json()
    assert stored["decision"] == "rejected" and stored["note"] == "partial volume at the dome"


def test_a_decision_after_the_session_expired_is_shown_as_not_stored(live_app, page, demo):
    vid, _ = demo
    login(page, live_app, "reader1")
    page.goto(f"{live_app.url}/volumes/{vid}?slice=7")
    page.wait_for_function(SHOWN, arg=7)
    page.context.clear_cookies()  # the session expires
    page.keyboard.press("a")
    banner = page.locator("#not-stored")
    banner.wait_for(state="visible")
    assert "NOT STORED" in banner.inner_text() and "slice 8" in banner.inner_text()
    api = live_app.client("reader1")
    assert api.get(f"/api/volumes/{vid}/slices/7/reviews").json() == []

    banner.get_by_role("link", name="Log in again").click()
    page.wait_for_url(re.compile(r"/login"))
    page.fill("input[name=username]", "reader1")
    page.fill("input[name=password]", "correct-horse-battery")
    page.click("button[type=submit]")
    page.wait_for_url(re.compile(rf"/volumes/{vid}\?slice=7"))  # the same slice, no 405
    page.wait_for_function(SHOWN, arg=7)
    page.get_by_role("button", name="Store it now").click()
    page.wait_for_function(
        "document.querySelector('#review .state-card').classList.contains('approved')"
    )
    (stored,) = api.get(f"/api/volumes/{vid}/slices/7/reviews").json()
    assert stored["decision"] == "approved" and stored["user"] == "reader1"


def test_own_preset_saved_and_made_the_default(live_app, page, demo):
    vid, _ = demo
    login(page, live_app, "reader1")
    page.goto(f"{live_app.url}/volumes/{vid}?slice=4")
    page.wait_for_function(SHOWN, arg=4)
    page.keyboard.press("6")  # liver-pv, the portal-venous preset
    assert page.locator("#hud-window").inner_text() == "W 200 · L 90"
    page.fill("input[name=ww]", "250")
    page.dispatch_event("input[name=ww]", "change")
    page.once("dialog", lambda d: d.accept("my liver"))
    page.click("#preset-save")
    page.wait_for_url(re.compile(r"window=my"))
    page.click("#preset-default")
    page.wait_for_function("document.querySelector('#toasts').textContent.includes('opens with')")
    page.goto(f"{live_app.url}/volumes/{vid}")
    assert page.locator("input[name=window][value='my liver']").is_checked()
    assert page.locator("#hud-window").inner_text() == "W 250 · L 90"
