"""The utility results page's words and files: verdict sentence, table, CSV, curve."""

from __future__ import annotations

import csv
import io

from app.services.utility import report


def _row(arm, fraction, mean, ci, diff=None, n_real=100, n_syn=0):
    return {"arm": arm, "fraction": fraction, "n_real": n_real, "n_synthetic": n_syn,
            "n_real_available": int(100 * fraction), "seeds": [mean] * 3, "mean": mean,
            "ci95": ci, "diff_vs_real": diff}  # fmt: skip


RESULT = {
    "task": "segmentation", "metric": "dice",
    "inference": {"seeds": 3, "patients": 4, "can_call": True, "reason": None},
    "results": [
        _row("real", 0.5, 0.70, [0.66, 0.74], n_real=50),
        _row("real+syn:1", 0.5, 0.78, [0.75, 0.81],
             {"mean": 0.08, "ci95": [0.05, 0.11], "p": 0.0005}, n_real=50, n_syn=50),
        _row("real", 1.0, 0.81, [0.78, 0.84]),
        _row("real+aug", 1.0, 0.82, [0.79, 0.85], {"mean": 0.01, "ci95": [-0.01, 0.03], "p": 0.3}),
        _row("real+syn:1", 1.0, 0.85, [0.82, 0.87],
             {"mean": 0.04, "ci95": [0.01, 0.07], "p": 0.01}, n_syn=100),
    ],
}  # fmt: skip


def test_verdict_names_the_clear_change_with_its_numbers():
    assert report.verdict(RESULT) == (
        "With all real images, adding 1:1 synthetic images raised Dice from 0.81 [0.78–0.84] "
        "to 0.85 [0.82–0.87], p = 0.01."
    )


def test_verdict_says_when_nothing_changed_clearly():
    flat = {**RESULT, "results": [r for r in RESULT["results"] if r["arm"] != "real+syn:1"]}
    text = report.verdict(flat)
    assert text.startswith("No arm changed Dice clearly with all real images")
    assert "real + standard augmentation" in text and "p = 0.30" in text


def test_table_csv_and_curve_cover_every_arm_and_fraction():
    t = report.table(RESULT)
    assert t["fractions"] == [0.5, 1.0]
    assert [r["label"] for r in t["rows"]] == [
        "real only", "real + 1:1 synthetic", "real + standard augmentation"]  # fmt: skip
    rows = list(csv.DictReader(io.StringIO(report.to_csv(RESULT))))
    assert len(rows) == 5 and rows[1]["p"] == "0.0005" and rows[0]["diff_vs_real"] == ""
    svg = str(report.learning_curve(RESULT))
    assert svg.count("<polygon") == 2 and svg.count("<circle") == 5  # a band per arm of 2+ points
    assert svg.count("ci-bar") == 5  # and an interval bar at every point
