"""Issue 22 §5 in the browser: the job form keeps the preset and typed values across a dataset
change; the reader-study results table shows every column."""

from __future__ import annotations

import pytest

from tests.app.job_helpers import make_dataset
from tests.browser.conftest import login

pytestmark = [pytest.mark.browser]


def test_changing_dataset_keeps_preset_and_typed_values(live_app, page):
    other = make_dataset(live_app.sessions, live_app.settings, res=16)
    make_dataset(live_app.sessions, live_app.settings, res=32)  # the newest: the default
    login(page, live_app)
    page.goto(live_app.url + "/jobs")
    assert page.locator("#jf-preset").input_value() == "cpu"  # no GPU here
    assert page.locator("#jf-res").get_attribute("placeholder") == "32"
    page.click("#job-form summary")
    page.fill("#jf-kimg", "12")
    page.fill("#jf-cmax", "64")
    page.select_option("#jf-dataset", str(other))
    # htmx swaps the form: wait until the new one shows the other dataset
    page.wait_for_function(
        "id => (document.querySelector('#jf-dataset') || {}).value === id"
        " && (document.querySelector('#jf-res') || {}).placeholder === '16'", arg=str(other),
    )  # fmt: skip
    assert page.locator("#jf-preset").input_value() == "cpu"
    assert page.locator("#jf-cbase").input_value() == "2048"  # the preset's, not "auto"
    assert page.locator("#jf-cmax").input_value() == "64"  # what was typed
    assert page.locator("#jf-zdim").input_value() == "128"
    assert page.locator("#jf-kimg").input_value() == "12"
    assert page.locator("#jf-res").input_value() == ""  # follows the dataset: 16
