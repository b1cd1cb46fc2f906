"""In the browser: the job form's CPU preset, its live duration estimate, and chart hovers."""

from __future__ import annotations

import json

import pytest

from app.db import session_scope
from app.models import Job
from tests.app.job_helpers import kill_trainers, make_dataset
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
    assert "No estimate" in page.locator("#job-estimate").inner_text()  # no length yet
    page.fill("#jf-kimg", "12")
    page.dispatch_event("#jf-kimg", "change")
    page.wait_for_function(
        "() => (document.querySelector('#job-estimate') || {}).textContent"
        ".includes('Estimated duration')"
    )
    small = page.locator("#job-estimate").inner_text()
    assert "Estimated duration" in small and "CPU" in small
    page.select_option("#jf-preset", "auto")  # the paper's network: fields go back to auto
    # the form is swapped by htmx: the predicates allow for a moment without it
    page.wait_for_function(
        "() => (document.querySelector('#jf-preset') || {}).value === 'auto'"
        " && (document.querySelector('#jf-cbase') || {}).value === ''"
        " && !(document.querySelector('#job-estimate') || {}).textContent.includes('2048')"
    )
    page.fill("#jf-kimg", "12")
    page.dispatch_event("#jf-kimg", "change")
    _estimate_says(page, "Estimated duration")
    big = page.locator("#job-estimate").inner_text()
    assert big != small and "Estimated duration" in big
    assert "Measure this machine (about" in big  # the paper's network: measured on request
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


def _estimate_says(page, text: str, timeout: float = 15_000) -> None:
    page.wait_for_function(
        "t => ((document.querySelector('#job-estimate') || {}).textContent || '').includes(t)",
        arg=text, timeout=timeout,
    )  # fmt: skip


def test_a_length_is_required_the_machine_is_measured_and_a_long_job_confirmed(live_app, page):
    """Empty length: an error, no job. A length: the estimate measures this machine by itself
    (a real `trainer info speed`). Over a day: a box to tick, then the job starts."""
    make_dataset(live_app.sessions, live_app.settings, res=16)
    login(page, live_app)
    page.goto(live_app.url + "/jobs")
    page.click("#job-form button[type=submit]")
    page.wait_for_selector("#err-kimg")
    assert "say how long" in page.locator("#err-kimg").inner_text()
    with session_scope(live_app.sessions) as session:
        assert session.query(Job).count() == 0
    page.fill("#jf-kimg", "1")
    page.dispatch_event("#jf-kimg", "change")
    # measuring is a few real training steps: generous on a busy machine
    _estimate_says(page, "Measured on this machine", timeout=300_000)
    per_kimg = float(page.locator("#job-estimate").inner_text().split("(")[1].split(" s per")[0])
    page.fill("#jf-kimg", str(round(3 * 86400 / per_kimg)))
    page.dispatch_event("#jf-kimg", "change")
    _estimate_says(page, "Over a day on this machine")
    page.click("#job-form button[type=submit]")
    page.wait_for_selector("#err-confirm_long")
    page.check("input[name=confirm_long]")
    page.wait_for_timeout(300)  # the re-estimate on change keeps the tick
    assert page.locator("input[name=confirm_long]").is_checked()
    try:
        page.click("#job-form button[type=submit]")
        page.wait_for_url("**/jobs/*")
        with session_scope(live_app.sessions) as session:
            job = session.query(Job).one()
            assert job.options["confirm_long"] and job.options["speed_measured"]
    finally:
        kill_trainers(live_app.settings.runs_dir)
