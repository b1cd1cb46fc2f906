"""What the pages and the API make of stored metric results: the newest number per metric,
the PPL variant in words, the job's FID-over-kimg points and the study panel's summary."""

from __future__ import annotations

from app.db import session_scope
from app.models import Job, MetricRun, Snapshot
from app.presentation.charts import job_charts
from app.presentation.metric_views import fid_points, latest, ppl_label
from app.templating import templates
from tests.app.job_helpers import make_dataset

PPL = {"mean": 102.7, "variant": "ppl2_wend", "space": "w", "sampling": "end",
       "epsilon": 1e-4, "similarity": "lpips-vgg16 (torch-fidelity)"}  # fmt: skip


def _result(**metrics) -> dict:
    return {"metrics": metrics, "options": {"num": 10000}}


def _run(run_id: int, state: str = "completed", **metrics) -> MetricRun:
    return MetricRun(id=run_id, state=state, metrics=list(metrics), result=_result(**metrics))


def test_latest_takes_each_metric_from_the_newest_run_that_computed_it():
    runs = [  # newest first
        _run(4, state="failed"),
        _run(3, fid={"value": 40.0, "relative": 2.0, "real_halves": 20.0}),
        _run(2, fid={"value": 52.6}, c2st={"accuracy": 0.61, "ci95": [0.55, 0.67]}),
        _run(1, ppl=PPL),
    ]
    out = latest(runs)
    assert out["fid"] == 40.0 and out["fid_relative"] == 2.0 and out["c2st_accuracy"] == 0.61
    assert out["ppl"] == 102.7 and out["ppl_variant"] == "ppl2_wend" and out["kid"] is None
    assert out["runs"] == {"fid": 3, "c2st": 2, "ppl": 1} and out["num"] == 10000
    assert latest([_run(5, state="failed")]) is None


def test_the_ppl_variant_is_named_in_words():
    assert ppl_label(PPL) == "PPL (W, end-points, ε=1e-4, LPIPS-VGG16)"
    full = ppl_label({**PPL, "sampling": "full", "epsilon": 0.02})
    assert full == "PPL (W, full path, ε=0.02, LPIPS-VGG16)"


def test_the_study_panel_summary_shows_every_number():
    summary = templates.env.get_template("metrics/_macros.html").module.summary
    run = _run(
        1,
        ppl=PPL,
        fid={"value": 52.6, "relative": 1.8},
        kid={"mean": 0.012, "std": 0.001},
        memorization={"copy_share": 0.02, "num_copies": 200},
        c2st={"accuracy": 0.55, "ci95": [0.5, 0.6]},
    )
    html = str(summary(latest([run])))
    for words in (
        "52.60",
        "relative FD 1.80",
        "0.012 ± 0.001",
        "PPL (W, end-points",
        "102.7",
        "2.0 %",
        "200 of 10000",
        "55.0 % [50.0 %, 60.0 %]",
        "50 % means",
    ):
        assert words in html, words


def test_the_job_chart_gets_fid_from_completed_metric_runs(db, settings):
    ds = make_dataset(db, settings)
    with session_scope(db) as session:
        job = Job(dataset_id=ds, resolution=16, total_kimg=1.0, run_dir="/nowhere")
        session.add(job)
        session.flush()
        for kimg, fids in ((1, [80.0, 70.0]), (2, [60.0]), (3, [])):
            snap = Snapshot(job_id=job.id, kimg=kimg, path=f"/nowhere/{kimg}.pt")
            session.add(snap)
            session.flush()
            for n, fid in enumerate(fids):
                session.add(MetricRun(snapshot_id=snap.id, state="completed", metrics=["fid"],
                                      request_key=f"{kimg}-{n}",
                                      result=_result(fid={"value": fid})))  # fmt: skip
            session.add(MetricRun(snapshot_id=snap.id, state="failed", metrics=["fid"],
                                  request_key=f"{kimg}-x"))  # fmt: skip
        job_id = job.id
    with session_scope(db) as session:
        points = fid_points(session, job_id)
    assert points == [(1.0, 70.0), (2.0, 60.0)]  # the newest run per snapshot
    fid_chart = str(job_charts([], points)[2])
    assert "metric runs" in fid_chart and "<polyline" in fid_chart
