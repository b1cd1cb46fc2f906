"""Composing a dataset in the browser: demo volumes left out by default, counts before
freezing, a freeze of selected volumes, and a patient-level split."""

from __future__ import annotations

import re

import pytest

from app.db import session_scope
from app.services.curation.demo import create_demo
from tests.app.curation_data import add_volume, off_centre_body, review
from tests.browser.conftest import login

pytestmark = pytest.mark.browser


@pytest.fixture
def page(page_without_csp):
    return page_without_csp  # the predicates below need eval (see conftest)


@pytest.fixture
def four_and_a_demo(live_app):
    """Volumes 1-4 (patients) with slices 0-2 approved; volume 5, a demo phantom, with 2."""
    with session_scope(live_app.sessions) as s:
        for n in range(1, 5):
            vol = add_volume(s, live_app.settings, off_centre_body(), f"ct-{n}")
            for index in range(3):
                review(s, vol, index, "reader1")
        demo = create_demo(s, live_app.settings, volumes=1, seed=0, size=64)[0]
        for index in (10, 11):
            review(s, demo, index, "reader1")
    return live_app


def _count(page) -> str:
    return page.locator("#freeze-preview .big-number").inner_text()


def test_freeze_selected_volumes_then_a_patient_level_split(four_and_a_demo, page):
    app = four_and_a_demo
    login(page, app, "reader1")
    page.goto(f"{app.url}/datasets")
    assert not page.locator("input[name=volume_ids][value='5']").is_checked()  # demo left out
    assert page.locator(".vol-choice", has_text="#5").locator(".badge.demo").count() == 1
    assert _count(page) == "12"
    page.uncheck("input[name=volume_ids][value='2']")
    page.wait_for_function(
        "document.querySelector('#freeze-preview .big-number').textContent === '9'"
    )
    page.fill("#ds-name", "three-patients")
    page.select_option("#ds-res", "32")
    page.get_by_role("button", name=re.compile(r"^Freeze$")).click()
    page.wait_for_url(re.compile(r"/datasets/\d+$"))
    assert page.locator(".dataset-grid figure").count() == 9
    version = app.client("reader1").get(page.url.replace("/datasets/", "/api/datasets/")).json()
    assert version["volume_ids"] == [1, 3, 4]

    page.goto(f"{app.url}/datasets")
    page.fill("#ds-name", "split")
    page.select_option("#ds-res", "32")
    page.fill("#ds-val", "0.25")
    page.fill("#ds-test", "0.25")
    page.fill("#ds-seed", "3")
    page.get_by_role("button", name=re.compile(r"^Freeze$")).click()
    page.wait_for_url(re.compile(r"/datasets/\d+$"))
    assert "Patient-level split" in page.content()
    links = page.locator("a", has_text=re.compile(r"^(train|val|test) #\d+"))
    assert links.count() == 3
    api = app.client("reader1")
    ids = [int(re.search(r"#(\d+)", t).group(1)) for t in links.all_inner_texts()]
    parts = [set(api.get(f"/api/datasets/{i}").json()["volume_ids"]) for i in ids]
    assert sorted(len(p) for p in parts) == [1, 1, 2]
    assert set().union(*parts) == {1, 2, 3, 4} and sum(len(p) for p in parts) == 4
