"""Issue 22 §5 in the browser: the job form keeps the preset and typed values across a dataset
change; the reader-study results table shows every column."""

from __future__ import annotations

import pytest

from tests.app.job_helpers import make_dataset
from tests.app.study_setup import add_world, create_study, tiny_run_fixture  # noqa: F401
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


_LAST_HEADER_SHOWN = """th => {
  const box = th.getBoundingClientRect();
  let el = th.parentElement;  // the box that would clip it: the nearest one that scrolls
  while (el && !['auto', 'scroll', 'hidden'].includes(getComputedStyle(el).overflowX)) {
    el = el.parentElement;
  }
  const right = Math.min(window.innerWidth, el ? el.getBoundingClientRect().right : Infinity);
  const inViewport = box.left >= 0 && box.right <= right + 0.5;  // seen, not scrolled away
  const scrolls = !!el && el.scrollWidth > el.clientWidth
                  && getComputedStyle(el).overflowX !== 'hidden';
  const clipped = th.scrollWidth > th.clientWidth;
  return {inViewport, scrolls, clipped, right: box.right, visibleRight: right};
}"""


@pytest.mark.parametrize("width", [1280, 900])
def test_results_table_shows_its_last_column(live_app, admin, tiny_run, page, width, tmp_path):
    world = add_world(live_app.sessions, live_app.settings.data_dir / "fx", tiny_run)
    study = create_study(admin, world)
    page.set_viewport_size({"width": width, "height": 900})
    login(page, live_app)
    page.goto(f"{live_app.url}/studies/{study['id']}/results")
    last = page.locator("table.study-stats thead th").last
    assert last.inner_text() == "Time / image"
    shown = last.evaluate(_LAST_HEADER_SHOWN)
    page.screenshot(path=str(tmp_path / f"results-{width}.png"), full_page=True)
    assert not shown["clipped"], shown
    if width >= 1280:  # a laptop: every column at once, no hidden scrolling
        assert shown["inViewport"], shown
    elif not shown["inViewport"]:  # a narrow window: the table scrolls in its own box
        assert shown["scrolls"], shown
        last.scroll_into_view_if_needed()
        shown = last.evaluate(_LAST_HEADER_SHOWN)
        assert shown["inViewport"], shown
    auc = page.locator("table.study-stats thead th", has_text="ROC AUC")
    assert auc.evaluate("th => th.scrollWidth <= th.clientWidth")  # "ROC AU…" never again
