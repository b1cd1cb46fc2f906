"""In the browser: the job form's CPU preset, its live duration estimate, and chart hovers."""

from __future__ import annotations

import json

import pytest

from app.db import session_scope
from app.models import Job
from tests.app.job_helpers import make_dataset
from tests.browser.conftest import login
from trainer.info import cpu_bf16_units

pytestmark = [pytest.mark.browser]


def test_cpu_preset_and_estimate_follow_the_form(live_app, page):
    make_dataset(live_app.sessions, live_app.settings, res=64)
    login(page, live_app)
    page.goto(live_app.url + "/jobs")
    assert page.locator("#jf-preset").input_value() == "cpu"  # no GPU here
    page.click("#job-form summary")
    assert page.locator("#jf-cbase").input_value() == "2048"
    small = page.locator("#job-estimate").inner_text()
    assert "Estimated duration" in small and "CPU" in small
    page.select_option("#jf-preset", "auto")  # the paper's network: fields go back to auto
    # the form is swapped by htmx: the predicates allow for a moment without it
    page.wait_for_function(
        "() => (document.querySelector('#jf-preset') || {}).value === 'auto'"
        " && (document.querySelector('#jf-cbase') || {}).value === ''"
        " && !(document.querySelector('#job-estimate') || {}).textContent.includes('2048')"
    )
    page.wait_for_timeout(500)
    big = page.locator("#job-estimate").inner_text()
    assert big != small and "Estimated duration" in big
    hint = page.locator("#jf-precision + small").inner_text()
    assert page.locator("#jf-precision").input_value() == "" and "8² layers and above" in hint
    if cpu_bf16_units() == "amx":  # this CPU's bf16 units make the mixed-precision run faster
        assert "AMX" in hint
        page.select_option("#jf-precision", "bf16")
        page.wait_for_function(
            "big => ((document.querySelector('#job-estimate') || {}).textContent || '')"
            ".trim() !== big.trim()", arg=big,
        )  # fmt: skip
    page.fill("#jf-kimg", "0")
    page.dispatch_event("#jf-kimg", "change")
    page.wait_for_function(
        "() => ((document.querySelector('#job-estimate') || {}).textContent || '')"
        ".includes('No estimate')"
    )


def test_charts_have_a_key_and_hover_values(live_app, page):
    ds = make_dataset(live_app.sessions, live_app.settings)
    run = live_app.settings.runs_dir / "charts"
    run.mkdir(parents=True)
    rows = [{"tick": i, "kimg": i * 0.5, "loss_G": 1.0 + i, "loss_D": 2.0 - i * 0.1,
             "augment_p": 0.01 * i} for i in range(1, 6)]  # fmt: skip
    (run / "stats.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    with session_scope(live_app.sessions) as session:
        job = Job(dataset_id=ds, state="completed", options={}, run_dir=str(run),
                  resolution=16, total_kimg=2.5, kimg=2.5)  # fmt: skip
        session.add(job)
        session.flush()
        job_id = job.id
    login(page, live_app)
    page.goto(f"{live_app.url}/jobs/{job_id}")
    losses = page.locator("svg.chart").first
    assert losses.locator(".chart-key").count() == 2
    titles = losses.locator("circle.chart-point title").all_text_contents()
    assert "loss_G: 6 at 2.500 kimg" in titles
    assert "FID tracking is off" in page.locator("svg.chart").nth(2).inner_html()
