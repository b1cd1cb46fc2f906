"""C2ST: ~50% on two samples of one distribution, ~100% on clearly different ones."""

from __future__ import annotations

import numpy as np

from tests.trainer.metrics_support import smooth_images
from trainer.metrics.c2st import c2st


def test_same_distribution_is_indistinguishable():
    a = smooth_images(80, res=16, seed=1)
    b = smooth_images(80, res=16, seed=2)
    out = c2st(a, b, folds=5, seed=0)
    lo, hi = out["ci95"]
    assert lo <= 0.5 <= hi, out
    assert 0.35 < out["accuracy"] < 0.65 and len(out["fold_accuracy"]) == 5


def test_different_distributions_are_told_apart():
    real = smooth_images(80, res=16, seed=3)
    rng = np.random.default_rng(4)
    fake = rng.integers(0, 256, size=real.shape, dtype=np.uint8)  # speckle, no structure
    out = c2st(real, fake, folds=5, seed=0)
    assert out["accuracy"] > 0.95 and out["ci95"][0] > 0.5 and out["p_value"] < 1e-6


def test_c2st_is_deterministic_and_balanced():
    a = smooth_images(30, res=16, seed=5)
    b = smooth_images(45, res=16, seed=6)
    first, second = (c2st(a, b, folds=3, epochs=2, seed=7) for _ in range(2))
    assert first == second
    assert first["n_real"] == first["n_generated"] == 30
