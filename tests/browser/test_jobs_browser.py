"""In the browser: start a job from the form, watch it progress, cancel it, resume it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.app.job_helpers import kill_trainers, make_dataset
from tests.browser.conftest import login

pytestmark = [pytest.mark.browser, pytest.mark.slow]


@pytest.fixture
def no_stray_trainers(settings):
    yield
    kill_trainers(settings.runs_dir)


def _kimg(page) -> float:
    return float(page.locator(".job-kimg").inner_text().split("/")[0])


def test_start_watch_cancel_and_resume_a_job(live_app, page, no_stray_trainers):
    make_dataset(live_app.sessions, live_app.settings)
    login(page, live_app)
    page.goto(live_app.url + "/jobs")
    assert page.locator(".cpu-warning").is_visible()

    page.fill("#jf-kimg", "0")  # a mistake first: shown next to the field, nothing started
    page.fill("#jf-batch", "4")
    page.click("#job-form button[type=submit]")
    page.locator("#err-kimg").wait_for()
    assert "> 0" in page.locator("#err-kimg").inner_text()

    page.fill("#jf-kimg", "2")
    page.fill("#jf-batch", "4")
    page.fill("#jf-snap", "1")
    page.click("#job-form summary")
    page.fill("#jf-cbase", "64")
    page.fill("#jf-cmax", "16")
    page.fill("#jf-zdim", "32")
    page.fill("#jf-tick", "0.016")
    page.click("#job-form button[type=submit]")
    page.wait_for_url(re.compile(r"/jobs/\d+$"))

    # live progress: the card is swapped every 2 s without a reload
    page.wait_for_function(
        "() => parseFloat(document.querySelector('.job-kimg').textContent) > 0", timeout=120_000
    )
    first = _kimg(page)
    page.wait_for_function(
        f"() => parseFloat(document.querySelector('.job-kimg').textContent) > {first}",
        timeout=120_000,
    )
    assert page.locator("#job-progress img.sample-grid").count() == 1
    assert page.locator("#job-progress svg.chart").count() == 3

    page.once("dialog", lambda d: d.accept())
    page.click("#job-progress button.bad")
    page.locator('#job-progress[data-state="cancelled"]').wait_for(timeout=60_000)
    assert page.locator("table.snapshots tbody tr").count() >= 1
    stopped = _kimg(page)

    page.click("#job-progress button:has-text('Resume')")
    page.locator('#job-progress[data-state="running"]').wait_for(timeout=60_000)
    page.wait_for_function(
        f"() => parseFloat(document.querySelector('.job-kimg').textContent) > {stopped}",
        timeout=120_000,
    )
    # the page shows only the log's tail, which a fast tiny run scrolls past: read the file
    job_id = page.url.rstrip("/").rsplit("/", 1)[-1]
    with live_app.client("admin") as api:
        run_dir = Path(api.get(f"/api/jobs/{job_id}").json()["run_dir"])
    assert "resumed at kimg" in (run_dir / "log.txt").read_text()
    page.once("dialog", lambda d: d.accept())
    page.click("#job-progress button.bad")
    page.locator('#job-progress[data-state="cancelled"]').wait_for(timeout=60_000)
