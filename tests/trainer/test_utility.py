"""Utility experiments at tiny scale on phantom slices: the task learns, useless data scores
worse, held-out sets are enforced, the bootstrap agrees with SciPy, a seed fixes the numbers."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from scipy import stats as sps

from tests.trainer.conftest import single_thread
from tests.trainer.utility_phantoms import pair_zip
from trainer.utility import stats, tasks
from trainer.utility.cli import main
from trainer.utility.data import UtilityError, check_held_out, load_samples

SPEC = tasks.TrainSpec(steps=80, batch=8, channels=(8, 16, 32))


@pytest.fixture(scope="module")
def zips(tmp_path_factory):
    d = tmp_path_factory.mktemp("utility")
    return {
        "train": pair_zip(d / "train.zip", [1, 2, 3, 4, 5], res=32),
        "shuffled": pair_zip(d / "shuffled.zip", [1, 2, 3, 4, 5], res=32, shuffle_masks=True),
        "test": pair_zip(d / "test.zip", [11, 12, 13], res=32, dataset_id=2),
        "overlap": pair_zip(d / "overlap.zip", [4, 12], res=32, dataset_id=3),
    }


def _dice(train_zip: str, test_zip: str, steps: int) -> np.ndarray:
    """Per-test-slice liver Dice of a U-Net trained `steps` steps on `train_zip`."""
    real, _ = load_samples(train_zip, "segmentation", None)
    test, _ = load_samples(test_zip, "segmentation", None)
    spec = tasks.TrainSpec(steps, SPEC.batch, SPEC.lr, SPEC.channels)
    with single_thread():
        model = tasks.train("segmentation", real, spec, seed=0, aug=False)
    return tasks.score("segmentation", model, test)["liver"]


def test_trained_unet_beats_untrained_and_shuffled_masks(zips):
    untrained = _dice(zips["train"], zips["test"], steps=0)
    trained = _dice(zips["train"], zips["test"], steps=SPEC.steps)
    shuffled = _dice(zips["shuffled"], zips["test"], steps=SPEC.steps)
    assert trained.mean() > untrained.mean() + 0.3, (trained.mean(), untrained.mean())
    # the experiment tells useless data: worse, with a paired CI that excludes no difference
    idx = stats.resample_indices(len(trained))
    diff = stats.paired_difference(stats.bootstrap_mean(trained, idx),
                                   stats.bootstrap_mean(shuffled, idx))  # fmt: skip
    assert diff["mean"] > 0.04 and diff["ci95"][0] > 0 and diff["p"] < 0.05, diff


def test_a_test_set_sharing_a_volume_is_refused(zips, capsys):
    rc = main(["--train", zips["train"], "--test", zips["overlap"], "--task", "segmentation",
               "--arms", "real", "--steps", "1", "--seeds", "1"])  # fmt: skip
    assert rc == 2
    assert "shares 1 source volume(s) with the training set (volume id 1004)" in (
        capsys.readouterr().err
    )
    train = load_samples(zips["train"], "segmentation", None)[1].provenance
    test = load_samples(zips["test"], "segmentation", None)[1].provenance
    seen_by_g = load_samples(zips["overlap"], "segmentation", None)[1].provenance
    with pytest.raises(UtilityError, match="snapshot's training data"):  # G saw test patient 12
        check_held_out(train, test, generator=seen_by_g)
    with pytest.raises(UtilityError, match="no medsynth.json provenance"):
        check_held_out(train, {})


def test_bootstrap_ci_matches_scipy():
    x = np.random.default_rng(3).beta(5, 2, size=300)
    ours = stats.bootstrap_mean(x, stats.resample_indices(len(x), 4000, seed=1))
    ref = sps.bootstrap((x,), np.mean, n_resamples=4000, method="percentile",
                        confidence_level=0.95, rng=np.random.default_rng(2))  # fmt: skip
    lo, hi = ref.confidence_interval
    assert ours["mean"] == pytest.approx(x.mean())
    assert ours["ci95"][0] == pytest.approx(lo, abs=0.004)
    assert ours["ci95"][1] == pytest.approx(hi, abs=0.004)


def test_paired_difference_and_auc():
    rng = np.random.default_rng(0)
    a = rng.uniform(0.6, 0.9, 200)
    idx = stats.resample_indices(200, 2000)
    same = stats.paired_difference(stats.bootstrap_mean(a, idx), stats.bootstrap_mean(a, idx))
    b = a + 0.02 + rng.normal(0, 0.01, 200)
    better = stats.paired_difference(stats.bootstrap_mean(b, idx), stats.bootstrap_mean(a, idx))
    assert same["mean"] == 0 and same["p"] == 1.0
    assert better["ci95"][0] > 0 and better["p"] < 0.01
    labels, scores = rng.integers(0, 2, 100), rng.normal(size=100)
    scores = scores + labels
    mw = sps.mannwhitneyu(scores[labels == 1], scores[labels == 0]).statistic
    assert stats.roc_auc(labels, scores) == pytest.approx(
        mw / (labels.sum() * (100 - labels.sum()))
    )


def _run(zips, tmp_path, name: str) -> dict:
    out = tmp_path / f"{name}.json"
    with single_thread():
        rc = main(["--train", zips["train"], "--test", zips["test"], "--task", "segmentation",
                   "--arms", "real,real+aug", "--fractions", "0.5,1", "--seeds", "2",
                   "--steps", "8", "--batch", "4", "--device", "cpu",
                   "--out", str(out)])  # fmt: skip
    assert rc == 0
    return json.loads(out.read_text())


def test_same_seed_gives_the_same_numbers(zips, tmp_path):
    first, second = _run(zips, tmp_path, "a"), _run(zips, tmp_path, "b")
    assert first["results"] == second["results"]
    rows = {(r["arm"], r["fraction"]): r for r in first["results"]}
    assert set(rows) == {("real", 0.5), ("real+aug", 0.5), ("real", 1.0), ("real+aug", 1.0)}
    assert rows[("real", 1.0)]["diff_vs_real"] is None and len(rows[("real", 1.0)]["seeds"]) == 2
    assert set(rows[("real+aug", 0.5)]["diff_vs_real"]) == {"mean", "ci95", "p"}
    assert rows[("real", 0.5)]["n_real"] < rows[("real", 1.0)]["n_real"]
    assert first["test"]["volumes"] == ["1011", "1012", "1013"]
    raw = rows[("real", 1.0)]["per_patient"]  # the unit of inference: seed x held-out patient
    assert raw["patients"] == ["1011", "1012", "1013"] and len(raw["by_seed"]) == 2
    assert np.mean(raw["by_seed"]) == pytest.approx(rows[("real", 1.0)]["mean"])
    assert not first["inference"]["can_call"] and "2 seeds" in first["inference"]["reason"]
    assert rows[("real+aug", 0.5)]["diff_vs_real"]["p"] is None  # 2 seeds: no p-value
    assert first["metric"] == "dice" and torch.isfinite(torch.tensor(first["seconds"]))


def test_synthetic_arms_and_classification_run_from_a_paired_snapshot(zips, tmp_path):
    from tests.trainer.helpers import TINY, run_trainer

    run = tmp_path / "run"
    out = run_trainer("train", "--data", zips["train"], "--outdir", str(run), "--kimg", "0",
                      *TINY, "--aug", "noaug")  # fmt: skip
    assert out.returncode == 0, out.stderr
    result = tmp_path / "cls.json"
    with single_thread():
        rc = main(["--snapshot", str(run / "snapshot-000000.pt"), "--train", zips["train"],
                   "--test", zips["test"], "--task", "classification", "--arms",
                   "real,real+syn:2,syn", "--fractions", "1", "--seeds", "1", "--steps", "4",
                   "--batch", "4", "--device", "cpu", "--out", str(result)])  # fmt: skip
    assert rc == 0
    doc = json.loads(result.read_text())
    rows = {r["arm"]: r for r in doc["results"]}
    assert doc["metric"] == "roc_auc" and set(rows) == {"real", "real+syn:2", "syn"}
    n = rows["real"]["n_real"]
    assert (rows["real+syn:2"]["n_real"], rows["real+syn:2"]["n_synthetic"]) == (n, 2 * n)
    assert (rows["syn"]["n_real"], rows["syn"]["n_synthetic"]) == (0, n)
    assert all(0 <= r["mean"] <= 1 for r in rows.values())
