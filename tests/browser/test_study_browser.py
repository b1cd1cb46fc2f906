"""A reader completes a small study with the keyboard; the admin then sees the results page."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect
from sqlalchemy import select

from app.db import session_scope
from app.models import Trial
from tests.app.study_setup import add_world, tiny_run_fixture  # noqa: F401
from tests.browser.conftest import login

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def test_reader_completes_a_study_with_the_keyboard_and_admin_sees_results(
    live_app, admin, tiny_run, browser, page, tmp_path
):
    add_world(live_app.sessions, live_app.settings.data_dir / "fx", tiny_run)
    login(page, live_app, "admin")  # the admin creates the study with the form
    page.goto(live_app.url + "/studies")
    page.fill("#st-name", "Keyboard")
    page.fill("#st-real", "3")
    page.fill("#st-fake", "3")
    page.fill("#st-psi", "0.7")
    page.check("input[name=rate_usable]")
    page.get_by_role("button", name="Create study").click()
    expect(page.locator(".form-error")).to_contain_text("at least one reader")
    page.get_by_label("reader1").check()
    page.get_by_role("button", name="Create study").click()
    # the images are made in the background; htmx polls the row until the study opens
    expect(page.get_by_role("link", name="Keyboard")).to_be_visible(timeout=300_000)
    sid = admin.get("/api/studies").json()[0]["id"]
    assert admin.get(f"/api/studies/{sid}").json()["truncation"] == 0.7

    page.context.clear_cookies()
    login(page, live_app, "reader1")
    page.goto(live_app.url + "/studies")
    page.get_by_role("link", name="Start").click()
    expect(page.locator(".topbar")).to_have_count(0)  # a clean page: no navigation
    keys = ["1", "5", "2", "4", "3", "5"]
    for i, key in enumerate(keys):
        expect(page.locator(".reader-progress")).to_have_text(f"{i + 1} / 6")
        expect(page.locator("#study-image")).to_have_js_property("complete", True)
        if i == 2:  # a reader can stop and come back to the same place
            page.goto(live_app.url + f"/studies/{sid}/read")
            expect(page.locator(".reader-progress")).to_have_text("3 / 6")
        if i % 2 == 0:
            page.keyboard.press("u")
            expect(page.locator("input[name=usable]")).to_be_checked()
        if i == 1:
            page.fill("input[name=comment]", "edge looks soft")
            page.locator("#study-image").click()  # leave the text box; keys answer again
        page.keyboard.press(key)
    expect(page.get_by_role("heading", name="Done")).to_be_visible()
    expect(page.locator("#trial")).to_contain_text("6 / 6 answered")

    with session_scope(live_app.sessions) as session:
        trials = session.scalars(select(Trial).order_by(Trial.position)).all()
        assert [t.rating for t in trials] == [int(k) for k in keys]
        assert [t.usable for t in trials] == [i % 2 == 0 for i in range(6)]
        assert trials[1].comment == "edge looks soft"
        assert all(t.client_ms is not None and t.server_ms is not None for t in trials)

    page.get_by_role("link", name="See the results").click()
    expect(page.get_by_role("heading", name="Detection of synthetic images")).to_be_visible()

    page.context.clear_cookies()
    login(page, live_app, "admin")
    page.goto(live_app.url + "/studies")
    expect(page.locator(f"#study-{sid}")).to_contain_text("reader1 6/6")
    page.locator(f"#study-{sid}").get_by_role("link", name="Results").click()
    expect(page.get_by_role("heading", name="Keyboard")).to_be_visible()
    table = page.locator("table.study-stats")
    expect(table).to_contain_text("Pooled")
    expect(table).to_contain_text("reader1")
    expect(page.locator("table.study-trials tbody tr")).to_have_count(6)
    expect(page.locator("#metrics")).to_contain_text("not computed yet")
    expect(page.get_by_role("link", name="Download every answer (CSV)")).to_be_visible()
    expect(page.locator("svg.roc")).to_be_visible()
    cell = page.locator("table.study-calls td.usable-cell").first  # never clipped
    assert cell.evaluate("td => td.scrollWidth <= td.clientWidth")
    page.screenshot(path=str(tmp_path / "results.png"), full_page=True)
