"""Bootstrap statistics over test slices: a mean with its 95% CI, and paired differences.

Every arm is scored on the same test slices, so the bootstrap draws slice indices once and
applies them to every arm: the difference to "real only" is paired slice by slice. A score
that is not a mean of per-slice values (ROC AUC) is recomputed on each resample.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

N_BOOT = 2000

Statistic = Callable[[np.ndarray], float]  # scores of the resampled slices -> one number


def resample_indices(n: int, n_boot: int = N_BOOT, seed: int = 0) -> np.ndarray:
    """[n_boot, n] slice indices drawn with replacement; the same draws for every arm."""
    return np.random.default_rng([seed, n]).integers(0, n, size=(n_boot, n))


def percentile_ci(values: np.ndarray, level: float = 0.95) -> list[float]:
    """The percentile interval of bootstrap values (NaNs from degenerate resamples dropped)."""
    v = np.asarray(values, float)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return [float("nan"), float("nan")]
    a = (1 - level) / 2
    return [float(np.quantile(v, a)), float(np.quantile(v, 1 - a))]


def bootstrap_mean(per_slice: np.ndarray, idx: np.ndarray, stat: Statistic | None = None) -> dict:
    """{"mean", "ci95", "boot"}: the statistic (default the mean) on all slices and its
    percentile 95% CI over the resamples `idx`."""
    per_slice = np.asarray(per_slice, float)
    if stat is None:
        boot, mean = per_slice[idx].mean(axis=1), float(per_slice.mean())
    else:
        boot, mean = np.array([stat(per_slice[i]) for i in idx]), stat(per_slice)
    return {"mean": mean, "ci95": percentile_ci(boot), "boot": boot}


def paired_difference(arm: dict, reference: dict) -> dict:
    """Difference arm - reference on the same resamples: mean, 95% CI and a two-sided
    bootstrap p-value (twice the smaller share of resampled differences on either side of 0)."""
    diff = np.asarray(arm["boot"]) - np.asarray(reference["boot"])
    diff = diff[np.isfinite(diff)]
    mean = float(arm["mean"] - reference["mean"])
    if diff.size == 0:
        return {"mean": mean, "ci95": [float("nan")] * 2, "p": float("nan")}
    below, above = np.mean(diff <= 0), np.mean(diff >= 0)
    p = float(min(1.0, 2 * min(below, above)))
    return {"mean": mean, "ci95": percentile_ci(diff), "p": max(p, 1 / diff.size)}


def roc_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve as the Mann-Whitney probability P(score+ > score-), ties 1/2;
    NaN when one class is absent (a resample with no tumour slice)."""
    from scipy.stats import rankdata

    labels = np.asarray(labels).astype(bool)
    n_pos, n_neg = int(labels.sum()), int((~labels).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = rankdata(scores)
    return float((ranks[labels].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))
