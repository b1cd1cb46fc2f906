"""Utility statistics on the unit that varies (seed x held-out patient), checked on simulated
per-seed, per-patient Dice with patient and seed random effects: a relabelled-real arm is
rarely called significant, a real gain is found, too small a design is never called, and the
page and exports say so."""

from __future__ import annotations

import csv
import io

import numpy as np
import pytest

from app.services.utility import report
from trainer.utility import inference


def _dice(rng, n_seeds: int, patient: np.ndarray, gain: float = 0.0) -> np.ndarray:
    """[seeds, patients] Dice: shared patient effects, the arm's own seed effects, seed x
    patient interaction (a model trained with another seed fails other patients)."""
    seed = rng.normal(0, 0.03, (n_seeds, 1))
    return 0.75 + gain + patient[None, :] + seed + rng.normal(0, 0.02, (n_seeds, len(patient)))


def _called(rng, n_seeds: int, n_patients: int, gain: float) -> bool:
    patient = rng.normal(0, 0.08, n_patients)
    real, other = _dice(rng, n_seeds, patient), _dice(rng, n_seeds, patient, gain)
    d = inference.difference(inference.mean_table(other), inference.mean_table(real),
                             n_seeds, n_patients)  # fmt: skip
    return d["p"] < 0.05


@pytest.mark.parametrize("n_seeds,n_patients", [(3, 3), (5, 8), (3, 12), (8, 4)])
def test_a_relabelled_real_arm_is_rarely_called_significant(n_seeds, n_patients):
    rng = np.random.default_rng([22, n_seeds, n_patients])
    false_calls = sum(_called(rng, n_seeds, n_patients, 0.0) for _ in range(100))
    assert false_calls <= 5, false_calls


def test_a_real_gain_is_found():
    rng = np.random.default_rng(3)
    assert sum(_called(rng, 5, 8, 0.08) for _ in range(100)) >= 80


def test_the_interval_holds_seed_to_seed_variance():
    """Patients agree within a seed, seeds disagree: a slice- or patient-only interval would
    be near zero wide; this one is about as wide as the seeds are apart."""
    table = np.array([[0.70] * 5, [0.80] * 5, [0.75] * 5, [0.72] * 5])
    out = inference.crossed(inference.mean_table(table), 4, 5)
    assert out["mean"] == pytest.approx(0.7425)
    assert out["ci95"][1] - out["ci95"][0] > 0.05
    assert out["ci95"][0] < 0.70 + 0.01 and out["ci95"][1] > 0.78


@pytest.mark.parametrize("n_seeds,n_patients", [(2, 10), (10, 2), (1, 5)])
def test_too_few_seeds_or_patients_are_never_called(n_seeds, n_patients):
    rng = np.random.default_rng(0)
    real = np.full((n_seeds, n_patients), 0.5) + rng.normal(0, 0.001, (n_seeds, n_patients))
    d = inference.difference(inference.mean_table(real + 0.3), inference.mean_table(real),
                             n_seeds, n_patients)  # fmt: skip
    assert d["p"] is None and d["mean"] == pytest.approx(0.3)
    assert (d["ci95"] is None) == (min(n_seeds, n_patients) < 2)
    design = inference.design(n_seeds, n_patients)
    assert not design["can_call"] and "at least 3 seeds and 3 held-out patients" in design["reason"]
    assert inference.design(3, 3)["can_call"]


def _result(seeds: int, patients: int, p: float | None) -> dict:
    def row(arm, mean, diff=None):
        return {"arm": arm, "fraction": 1.0, "n_real": 40, "n_synthetic": 40 * (arm != "real"),
                "n_real_available": 40, "seeds": [mean] * seeds, "mean": mean,
                "ci95": [mean - 0.02, mean + 0.02], "diff_vs_real": diff,
                "per_patient": {"patients": ["11", "12"], "n_slices": [6, 4],
                                "by_seed": [[0.81, 0.79]] * seeds}}  # fmt: skip

    return {"task": "segmentation", "metric": "dice",
            "inference": inference.design(seeds, patients),
            "results": [row("real", 0.70),
                        row("real+syn:1", 0.75, {"mean": 0.049, "ci95": [0.028, 0.071],
                                                 "p": p})]}  # fmt: skip


def test_a_small_design_is_described_not_called():
    text = report.verdict(_result(1, 2, None))
    assert text.startswith("Cannot be called significant: only 1 seed and 2 held-out patients")
    assert "p =" not in text and "p <" not in text and "(descriptive)" in text
    assert report.why_not_callable({"results": []}) == report.LEGACY  # old slice-only results
    called = report.verdict(_result(3, 5, 0.001))
    assert called.startswith("With all real images, adding 1:1 synthetic images raised Dice")
    assert "p = 0.001" in called


def test_the_csv_keeps_every_seed_and_patient():
    rows = list(csv.DictReader(io.StringIO(report.to_csv(_result(2, 2, None)))))
    assert rows[1]["p"] == ""
    assert rows[0]["dice_by_patient_and_seed"] == "volume 11: 0.81 0.81 | volume 12: 0.79 0.79"


def test_one_fraction_puts_arms_side_by_side_and_the_legend_below():
    svg = str(report.learning_curve(_result(3, 3, 0.2)))
    xs = [float(part.split("'")[0]) for part in svg.split("<circle cx='")[1:]]
    assert len(xs) == 2 and abs(xs[0] - xs[1]) >= 8  # no dot hides the other
    legend_y = [float(p.split("'")[0]) for p in svg.split("<rect x='")[1:] for p in
                [p.split("y='")[1]]]  # fmt: skip
    bars = [float(p.split("'")[0]) for p in svg.split("y2='")[1:]]
    assert min(legend_y) > max(bars)  # the legend is below every line of the plot
