"""One slice numbering for people (issue 22 item 5): the dataset page's "slice N" is the
"Slice N / total" its link opens in the viewer (1-based; URLs and JSON count from 0)."""

from __future__ import annotations

import re

import pytest

from app.db import session_scope
from tests.app.curation_data import add_volume, off_centre_body, review
from tests.browser.conftest import login

pytestmark = pytest.mark.browser


def test_the_dataset_caption_names_the_slice_the_viewer_opens(live_app, page_without_csp, admin):
    page = page_without_csp
    with session_scope(live_app.sessions) as s:
        vol = add_volume(s, live_app.settings, off_centre_body(shape=(96, 80, 12)), "vol-1")
        review(s, vol, 7, "reader1")
    freeze = {"name": "one", "resolution": 32, "window": "liver", "bit_depth": 8}
    r = admin.post("/api/datasets", json=freeze)
    assert r.status_code == 201 and r.json()["items"][0]["slice_index"] == 7  # JSON: from 0
    login(page, live_app, "admin")
    page.goto(f"{live_app.url}/datasets/{r.json()['id']}")
    caption = page.locator(".dataset-grid figcaption").first.inner_text()
    shown = int(re.search(r"slice (\d+)", caption).group(1))
    assert shown == 8
    page.locator(".dataset-grid figure a").first.click()
    page.wait_for_url(re.compile(r"/volumes/1\?slice=7"))
    assert page.locator("#hud-slice").inner_text() == str(shown)
    assert page.locator("#review h2").inner_text().startswith(f"Slice {shown}")
