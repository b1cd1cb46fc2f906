"""Issue 22 §5 in the browser: the job form keeps the preset and typed values across a dataset
change; the reader-study results table shows every column; the viewer draws a zoomed slice
smoothly, with a pixel-exact option."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image
from playwright.sync_api import expect

from app.db import session_scope
from app.models import Volume
from app.services.curation.demo import create_demo
from tests.app.dicom_files import ct_volume, write_series, zip_folder
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


def _equal_neighbours(png: bytes) -> float:
    """Share of screen pixels equal to their left neighbour: high when voxels are squares."""
    a = np.asarray(Image.open(io.BytesIO(png)).convert("L"), dtype=np.int16)
    h, w = a.shape
    core = a[h // 4 : 3 * h // 4, w // 4 : 3 * w // 4]  # inside the body, no letterbox
    return float((core[:, 1:] == core[:, :-1]).mean())


def test_viewer_interpolates_between_voxels_and_keeps_a_pixel_option(live_app, page):
    with session_scope(live_app.sessions) as s:
        vol_id = create_demo(s, live_app.settings, volumes=1, seed=0, size=64)[0].id
    login(page, live_app)
    page.goto(f"{live_app.url}/volumes/{vol_id}")
    page.wait_for_selector("#stage[data-shown]")
    canvas = page.locator("#slice-canvas")
    assert canvas.evaluate("c => getComputedStyle(c).imageRendering") == "auto"
    smooth = _equal_neighbours(canvas.screenshot())
    page.locator("#stage").click(position={"x": 5, "y": 5})  # focus the viewer, not a field
    page.keyboard.press("p")
    assert canvas.evaluate("c => getComputedStyle(c).imageRendering") == "pixelated"
    square = _equal_neighbours(canvas.screenshot())
    # 64 voxels drawn ~9 screen pixels wide: squares repeat each value, bilinear does not
    assert square > 0.8 and smooth < square - 0.3, (smooth, square)
    page.reload()  # the choice is remembered
    page.wait_for_selector("#stage[data-shown]")
    assert page.locator("#pixel-exact").is_checked()
    assert canvas.evaluate("c => getComputedStyle(c).imageRendering") == "pixelated"


def test_upload_asks_which_structure_and_keeps_the_ct(live_app, page, tmp_path):
    hu = ct_volume()
    write_series(tmp_path / "ct", hu)
    region = np.zeros(hu.shape, np.int16)
    region[10:25, 10:30, 1:5] = 1
    write_series(tmp_path / "m" / "seg1", region, intercept=0.0)
    ct = zip_folder(tmp_path / "ct", tmp_path / "ct.zip")
    masks = zip_folder(tmp_path / "m", tmp_path / "masks.zip")
    login(page, live_app)
    page.goto(live_app.url + "/volumes")
    page.set_input_files("#upload-file", str(ct))
    page.set_input_files("#upload-mask", str(masks))
    page.get_by_role("button", name="Upload and ingest").click()
    expect(page.get_by_text("whose name says neither liver nor tumour")).to_be_visible()
    # the CT and the mask stay chosen: answer the question and send again
    assert page.locator("#upload-file").evaluate("i => i.files.length") == 1
    page.select_option("#upload-structure", "liver")
    page.get_by_role("button", name="Upload and ingest").click()
    page.wait_for_url(lambda url: "/volumes/1" in url)
    with session_scope(live_app.sessions) as session:
        assert session.get(Volume, 1).has_mask
