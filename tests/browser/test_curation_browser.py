"""A radiologist's first session: log in, browse with the keyboard, approve, freeze, download."""

from __future__ import annotations

import io
import json
import re
import zipfile

import pytest

from app.db import session_scope
from app.services.curation.demo import create_demo
from tests.browser.conftest import login

pytestmark = pytest.mark.browser


@pytest.fixture
def page(page_without_csp):
    return page_without_csp  # the predicates below need eval (see conftest)


@pytest.fixture
def demo_volume(live_app):
    with session_scope(live_app.sessions) as session:
        volume = create_demo(session, live_app.settings, volumes=1, seed=0, size=64)[0]
        return volume.id


def _slice_shown(page) -> int:
    return int(page.locator("#stage").get_attribute("data-slice"))


def test_login_browse_approve_freeze_and_download(live_app, page, demo_volume):
    login(page, live_app)
    page.goto(f"{live_app.url}/volumes/{demo_volume}?slice=10")
    assert _slice_shown(page) == 10

    page.keyboard.press("k")
    page.wait_for_function("document.querySelector('#stage').dataset.slice === '11'")
    page.keyboard.press("ArrowLeft")
    page.keyboard.press("ArrowLeft")
    page.wait_for_function("document.querySelector('#stage').dataset.slice === '9'")
    page.keyboard.press("PageDown")
    page.wait_for_function("document.querySelector('#stage').dataset.slice === '19'")
    assert "/login" not in page.url

    approved = []
    for _ in range(3):
        current = _slice_shown(page)
        page.keyboard.press("a")
        page.wait_for_function(
            "document.querySelector('#review .state-card').classList.contains('approved')"
        )
        approved.append(current)
        page.keyboard.press("k")
        page.wait_for_function(
            f"document.querySelector('#stage').dataset.slice === '{current + 1}'"
        )
    page.keyboard.press("r")
    page.wait_for_function(
        "document.querySelector('#review .state-card').classList.contains('rejected')"
    )

    reviews = live_app.client("admin").get(f"/api/volumes/{demo_volume}").json()["progress"]
    assert reviews["approved"] == 3 and reviews["rejected"] == 1

    page.goto(f"{live_app.url}/datasets")
    page.fill("#ds-name", "browser-v1")
    page.select_option("#ds-res", "32")
    assert page.locator("#freeze-preview .big-number").inner_text() == "3"
    page.get_by_role("button", name=re.compile(r"^Freeze$")).click()
    page.wait_for_url(re.compile(r"/datasets/\d+$"))
    assert page.locator(".dataset-grid figure").count() == 3

    with page.expect_download() as info:
        page.get_by_role("link", name="Download zip").click()
    data = open(info.value.path(), "rb").read()
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        names = sorted(zf.namelist())
        labels = json.loads(zf.read("dataset.json"))["labels"]
        provenance = json.loads(zf.read("medsynth.json"))
    assert names == [
        "dataset.json",
        "img00000000.png",
        "img00000001.png",
        "img00000002.png",
        "medsynth.json",
    ]
    assert len(labels) == 3
    assert sorted(img["slice_index"] for img in provenance["images"]) == approved
