"""torch-fidelity's Fréchet distance and KID against direct NumPy/SciPy computations."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg
import torch
from torch_fidelity.metric_fid import fid_features_to_statistics, fid_statistics_to_metric
from torch_fidelity.metric_kid import kid_features_to_metric

from trainer.metrics.c2st import wilson_interval


def _features(n: int, d: int, seed: int, shift: float) -> np.ndarray:
    rng = np.random.default_rng(seed)
    mix = rng.normal(size=(d, d)) / np.sqrt(d)
    return rng.normal(size=(n, d)) @ mix + shift


def _frechet(a: np.ndarray, b: np.ndarray) -> float:
    mu_a, mu_b = a.mean(0), b.mean(0)
    s_a, s_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean = scipy.linalg.sqrtm(s_a @ s_b).real
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(s_a + s_b - 2 * covmean))


def _kid_exact(a: np.ndarray, b: np.ndarray) -> float:
    """Unbiased MMD^2 with k(x, y) = (x.y / d + 1)^3 on all samples at once."""
    m, d = len(a), a.shape[1]
    kxx, kyy, kxy = ((x @ y.T / d + 1) ** 3 for x, y in ((a, a), (b, b), (a, b)))
    off = lambda k: k.sum() - np.trace(k)  # noqa: E731
    return float((off(kxx) + off(kyy)) / (m * (m - 1)) - 2 * kxy.sum() / (m * m))


@pytest.mark.parametrize("shift", [0.0, 0.7])
def test_frechet_distance_matches_scipy(shift):
    a, b = _features(400, 24, 0, 0.0), _features(300, 24, 1, shift)
    stats = [fid_features_to_statistics(torch.from_numpy(x)) for x in (a, b)]
    fid = fid_statistics_to_metric(*stats, verbose=False)["frechet_inception_distance"]
    assert fid == pytest.approx(_frechet(a, b), rel=1e-6, abs=1e-8)


def test_kid_one_full_subset_matches_exact_mmd():
    a, b = _features(200, 32, 2, 0.0), _features(200, 32, 3, 0.3)
    out = kid_features_to_metric(
        torch.from_numpy(a), torch.from_numpy(b), kid_subsets=1, kid_subset_size=200, verbose=False
    )
    assert out["kernel_inception_distance_mean"] == pytest.approx(_kid_exact(a, b), rel=1e-9)
    assert out["kernel_inception_distance_std"] == 0.0


def test_kid_subsets_average_near_the_exact_value():
    a, b = _features(300, 16, 4, 0.0), _features(300, 16, 5, 0.5)
    out = kid_features_to_metric(
        torch.from_numpy(a), torch.from_numpy(b), kid_subsets=50, kid_subset_size=150, verbose=False
    )
    exact = _kid_exact(a, b)
    assert abs(out["kernel_inception_distance_mean"] - exact) < 0.25 * abs(exact)


def test_wilson_interval_known_values():
    lo, hi = wilson_interval(50, 100)
    assert (lo, hi) == pytest.approx((0.4038, 0.5962), abs=1e-4)
    lo, hi = wilson_interval(100, 100)
    assert hi == 1.0 and lo == pytest.approx(0.9630, abs=1e-4)
