"""An independent second read in the browser (issue 22 item 2): the second reader sees
nothing of the first reader's decision until deciding, `u` stops on slices the other reader
decided, the agreement (kappa) is on the page, and an assigned admin may reveal the others."""

from __future__ import annotations

import pytest

from app.db import session_scope
from app.services.curation.demo import create_demo
from tests.browser.conftest import login

pytestmark = pytest.mark.browser
SHOWN = "(n) => document.querySelector('#stage').dataset.shown === String(n)"
PANEL = "(n) => document.querySelector('#review').dataset.slice === String(n)"


@pytest.fixture
def assigned(live_app):
    """A demo volume with reader1, reader2 and admin assigned; reader1 approved slices 10-12
    with a note."""
    with session_scope(live_app.sessions) as s:
        create_demo(s, live_app.settings, volumes=1, seed=0, size=64)
    with live_app.client("admin") as admin:
        r = admin.put(
            "/api/volumes/1/reviewers", json={"reviewers": ["reader1", "reader2", "admin"]}
        )
        assert r.status_code == 200, r.text
    with live_app.client("reader1") as r1:
        for index in (10, 11, 12):
            body = {"decision": "approved", "note": "looks clean"}
            assert r1.put(f"/api/volumes/1/slices/{index}/review", json=body).status_code == 200
    return live_app


def test_the_second_reader_decides_blind_then_sees_the_first(assigned, page_without_csp):
    page = page_without_csp
    login(page, assigned, "reader2")
    page.goto(f"{assigned.url}/volumes/1?slice=9")
    page.wait_for_function(SHOWN, arg=9)
    page.uncheck("#advance")
    page.keyboard.press("u")  # next slice not decided by me: 10, though reader1 decided it
    page.wait_for_function(SHOWN, arg=10)
    page.wait_for_function(PANEL, arg=10)
    panel = page.locator("#review")
    text = panel.inner_text()
    assert "NOT REVIEWED" in text and "reader1" not in text and "looks clean" not in text
    assert "hidden until you decide" in text
    assert "approved" not in (page.locator("#vmap i").nth(10).get_attribute("class") or "")
    assert "0 approved" in page.locator("#progress").inner_text()  # my own progress

    page.keyboard.press("r")
    page.wait_for_function(
        "document.querySelector('#review .state-card').classList.contains('rejected')"
    )
    text = panel.inner_text()
    assert "reader1" in text and "looks clean" in text and "1 of 2" in text  # now shown

    page.reload()
    kappa = page.locator("#kappa")
    assert "Cohen" in kappa.inner_text() and "reader1, reader2" in kappa.inner_text()
    # one slice both read, approved by one and rejected by the other: kappa 0 over 1 slice
    assert [kappa.locator("b").nth(i).inner_text() for i in (0, 1)] == ["0.00", "1"]


def test_an_assigned_admin_may_reveal_the_others(assigned, page_without_csp):
    page = page_without_csp
    login(page, assigned, "admin")
    page.goto(f"{assigned.url}/volumes/1?slice=11")
    page.wait_for_function(PANEL, arg=11)
    assert "reader1" not in page.locator("#review").inner_text()
    page.click("#reveal-toggle")
    page.wait_for_url("**reveal=1**")
    page.wait_for_function(PANEL, arg=11)
    assert "reader1" in page.locator("#review").inner_text()
    page.keyboard.press("ArrowRight")  # the panel of the next slice keeps the reveal
    page.wait_for_function(PANEL, arg=12)
    assert "looks clean" in page.locator("#review").inner_text()
