"""The new-study form in the browser: choosing another snapshot re-fills the form (its own
dataset, its held-out version, counts it can give, classes for a conditional one), and a
study on the conditional snapshot is created without touching any other field."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect
from sqlalchemy import select

from app.db import session_scope
from app.models import Study
from tests.app.study_setup import (  # noqa: F401  (the fixtures provide tiny runs)
    add_world,
    tiny_cond_run_fixture,
    tiny_run_fixture,
)
from tests.browser.conftest import login

SETTLED = ("() => !document.querySelector("
           "'.htmx-request, .htmx-swapping, .htmx-settling, .htmx-added')")


def _refill(page, selector: str, value: str) -> None:
    """Choose an option and wait until htmx has fetched and swapped in the re-filled form (the
    old form's values must not be what a click submits)."""
    with page.expect_response(lambda r: "/studies/form" in r.url):
        page.select_option(selector, value)
    page.wait_for_function(SETTLED)

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def test_the_form_follows_the_snapshot_and_creates_a_mixed_study(
    live_app, page, tiny_run, tiny_cond_run
):
    cond = add_world(live_app.sessions, live_app.settings.data_dir / "b", tiny_cond_run,
                     other_patients=True, cond=True)  # fmt: skip
    plain = add_world(live_app.sessions, live_app.settings.data_dir / "a", tiny_run)
    login(page, live_app, "admin")
    page.goto(live_app.url + "/studies")
    expect(page.locator("#st-snapshot")).to_have_value(str(plain.snapshot_id))  # the newest
    expect(page.locator("#st-dataset")).to_have_value(str(plain.dataset_id))
    expect(page.locator("#st-label")).to_contain_text("unconditional")
    page.fill("#st-name", "Typed first")  # what the user typed survives the re-fill
    page.fill("#st-psi", "0.8")
    page.get_by_label("reader1").check()
    _refill(page, "#st-snapshot", str(cond.snapshot_id))  # htmx re-fills the form
    expect(page.locator("#st-dataset")).to_have_value(str(cond.dataset_id))
    expect(page.locator("#st-name")).to_have_value("Typed first")
    expect(page.locator("#st-psi")).to_have_value("0.8")
    expect(page.get_by_label("reader1")).to_be_checked()
    expect(page.locator("#st-holdout")).to_have_value(str(cond.holdout_id))
    expect(page.locator("#st-label")).to_have_value("mix")
    expect(page.locator("#st-real")).to_have_value("16")
    _refill(page, "#st-holdout", str(cond.dataset_id))  # the other re-fill keeps it too
    expect(page.locator("#st-holdout")).to_have_value(str(cond.dataset_id))
    expect(page.locator("#st-name")).to_have_value("Typed first")
    _refill(page, "#st-holdout", str(cond.holdout_id))
    expect(page.locator("#st-real")).to_have_value("16")
    expect(page.get_by_label("reader1")).to_be_checked()
    page.get_by_role("button", name="Create study").click()
    # returns at once; the row counts the images, then the study opens (a loaded machine waits)
    expect(page.locator("table.studies")).to_contain_text("reader1 0/32", timeout=300_000)
    expect(page.locator("table.studies .badge").first).to_have_text("open")
    with session_scope(live_app.sessions) as session:
        study = session.scalar(select(Study))
        assert study.name == "Typed first" and study.truncation == 0.8
        assert study.snapshot_id == cond.snapshot_id and study.reals_held_out
        assert study.class_mix == {"0": {"real": 8, "fake": 8}, "1": {"real": 8, "fake": 8}}
