"""In the browser: start metrics from the snapshot page, watch the live card, see the results
and the closest pairs appear without a reload."""

from __future__ import annotations

import dataclasses
import time

import pytest

from tests.app.job_helpers import kill_trainers
from tests.app.metric_helpers import TINY_EXTRACTOR_MODULE, metric_world
from tests.app.study_setup import tiny_run_fixture  # noqa: F401  (provides tiny_run)
from tests.browser.conftest import login

pytestmark = [pytest.mark.browser, pytest.mark.slow]


@pytest.fixture
def settings(settings, tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    return dataclasses.replace(settings, metrics_extractor_module=TINY_EXTRACTOR_MODULE)


def test_start_watch_and_read_a_metric_run(live_app, page, tiny_run, tmp_path):
    sid = metric_world(live_app, tiny_run).snapshot_id
    login(page, live_app)
    failed = []  # every answer of 500 or more (a polled partial that breaks shows nothing)
    page.on("response", lambda r: failed.append(r.url) if r.status >= 500 else None)
    page.goto(f"{live_app.url}/snapshots/{sid}")
    try:  # the form comes once the machine is measured (which metrics can run, how long)
        page.locator("#metrics-panel form.metric-form").wait_for(timeout=90_000)
        assert "Estimated time on this machine" in page.locator("#metric-estimate").inner_text()
        assert page.locator("#m-device option[value=cuda]").count() == 0  # no GPU here
        for box in page.locator("#metrics-panel input[name=metrics]").all():
            box.uncheck()  # a mistake first: nothing chosen, the error is shown inline
        page.click("#metrics-panel button[type=submit]")
        page.locator("#metrics-panel .form-error").wait_for()
        assert "at least one" in page.locator("#metrics-panel .form-error").inner_text()

        for name in ("fid", "kid", "pr", "memorization", "c2st"):  # PPL's weights are not here
            page.check(f"#metrics-panel input[value={name}]")
        page.fill("#m-num", "24")
        page.click("#metrics-panel button[type=submit]")
        page.locator(".metric-progress").wait_for()
        page.locator("table.metric-results").wait_for(timeout=120_000)  # polling swapped it in
        assert page.locator(".metric-progress").count() == 0
        assert "50 % = indistinguishable" in page.locator("#metrics-panel").inner_text()
        page.locator(".metric-pairs").scroll_into_view_if_needed()
        imgs = page.locator(".metric-pairs img")  # both sides of every closest pair load
        every = "imgs => imgs.every(img => img.complete && img.naturalWidth > 0)"
        deadline = time.monotonic() + 60  # (wait_for_function evals a string: the CSP says no)
        while not imgs.evaluate_all(every) and time.monotonic() < deadline:
            page.wait_for_timeout(250)
        assert imgs.count() and imgs.evaluate_all(every)
        page.screenshot(path=str(tmp_path / "metrics.png"), full_page=True)
        assert failed == []
    finally:
        kill_trainers(live_app.settings.runs_dir)
