"""Reader-study statistics: how well readers detect synthetic images, per reader and pooled.

Positive = synthetic. On the 5-point scale (1 definitely real ... 5 definitely synthetic) a
rating of 4 or 5 *calls* an image synthetic and 1-3 do not (3 = unsure counts as "not detected";
with a balanced design a reader who always says 3 scores 50 %). ROC AUC uses all five levels,
so it does not depend on that threshold.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

SYNTHETIC_FROM = 4  # ratings >= this call the image synthetic
LEVELS = (1, 2, 3, 4, 5)


@dataclass(frozen=True)
class Rating:
    """One answered trial, reduced to what the statistics need."""

    reader: str
    image_id: int
    synthetic: bool
    rating: int
    usable: bool | None = None
    ms: int | None = None  # server-measured time from showing the image to the answer

    @property
    def called_synthetic(self) -> bool:
        return self.rating >= SYNTHETIC_FROM


def _num(x: float | None) -> float | None:
    """A JSON-safe float: NaN and infinities become None."""
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None


def _ratio(a: float, b: float) -> float | None:
    return a / b if b else None


def roc_auc(synthetic: Sequence[float], real: Sequence[float]) -> float | None:
    """P(a synthetic image is rated more synthetic than a real one), ties counting one half.

    This is the Mann-Whitney U of the synthetic ratings divided by n_synthetic * n_real.
    """
    n1, n0 = len(synthetic), len(real)
    if not n1 or not n0:
        return None
    ranks = stats.rankdata(np.concatenate([np.asarray(synthetic, float), np.asarray(real, float)]))
    u = ranks[:n1].sum() - n1 * (n1 + 1) / 2
    return float(u / (n1 * n0))


def fleiss_kappa(counts: np.ndarray) -> float | None:
    """Fleiss' kappa from a [subjects, categories] matrix of how many raters chose each category.

    With the same number of raters per subject this is Fleiss (1971); subjects rated by fewer
    than two raters are left out, and unequal rater counts use the usual per-subject agreement.
    """
    counts = np.asarray(counts, dtype=float)
    n_i = counts.sum(axis=1)
    counts, n_i = counts[n_i >= 2], n_i[n_i >= 2]
    if len(counts) == 0:
        return None
    p_i = ((counts**2).sum(axis=1) - n_i) / (n_i * (n_i - 1))
    p_bar = p_i.mean()
    p_j = counts.sum(axis=0) / n_i.sum()
    p_e = float((p_j**2).sum())
    if math.isclose(p_e, 1.0):
        return None  # every rating in one category: agreement beyond chance is undefined
    return float((p_bar - p_e) / (1 - p_e))


def detection(ratings: Sequence[Rating]) -> dict:
    """Confusion counts, accuracy with an exact binomial test vs 50 %, AUC, KS, time, usable."""
    syn = [r for r in ratings if r.synthetic]
    real = [r for r in ratings if not r.synthetic]
    tp = sum(r.called_synthetic for r in syn)
    fn = len(syn) - tp
    fp = sum(r.called_synthetic for r in real)
    tn = len(real) - fp
    n = len(ratings)
    out: dict = {
        "n": n,
        "n_synthetic": len(syn),
        "n_real": len(real),
        "tp": tp,
        "fn": fn,
        "tn": tn,
        "fp": fp,
        "accuracy": _ratio(tp + tn, n),
        "sensitivity": _ratio(tp, tp + fn),
        "specificity": _ratio(tn, tn + fp),
        "false_positive_rate": _ratio(fp, fp + tn),  # real images called synthetic
        "false_negative_rate": _ratio(fn, fn + tp),  # synthetic images called real
        "binomial_p": None,
        "accuracy_ci": None,
        "auc": roc_auc([r.rating for r in syn], [r.rating for r in real]),
        "mean_rating_synthetic": _num(np.mean([r.rating for r in syn])) if syn else None,
        "mean_rating_real": _num(np.mean([r.rating for r in real])) if real else None,
        "mean_rating_difference": None,
        "ks_statistic": None,
        "ks_p": None,
    }
    if n:
        test = stats.binomtest(tp + tn, n, 0.5, alternative="two-sided")
        ci = test.proportion_ci(confidence_level=0.95, method="exact")
        out["binomial_p"] = _num(test.pvalue)
        out["accuracy_ci"] = [_num(ci.low), _num(ci.high)]
    if syn and real:
        out["mean_rating_difference"] = out["mean_rating_synthetic"] - out["mean_rating_real"]
        ks = stats.ks_2samp([r.rating for r in syn], [r.rating for r in real])
        out["ks_statistic"], out["ks_p"] = _num(ks.statistic), _num(ks.pvalue)
    times = [r.ms for r in ratings if r.ms is not None]
    out["mean_ms"] = _num(np.mean(times)) if times else None
    out["median_ms"] = _num(np.median(times)) if times else None
    for name, group in (("synthetic", syn), ("real", real)):
        rated = [r.usable for r in group if r.usable is not None]
        out[f"usable_{name}"] = _ratio(sum(rated), len(rated))
    return out


def agreement(ratings: Iterable[Rating]) -> dict:
    """Fleiss' kappa across readers, on the binary call and on the five categories."""
    by_image: dict[int, list[int]] = defaultdict(list)
    readers = set()
    for r in ratings:
        by_image[r.image_id].append(r.rating)
        readers.add(r.reader)
    five = np.array([[v.count(level) for level in LEVELS] for v in by_image.values()])
    if len(five) == 0:
        five = np.zeros((0, 5))
    binary = np.stack(
        [five[:, : SYNTHETIC_FROM - 1].sum(1), five[:, SYNTHETIC_FROM - 1 :].sum(1)], 1
    )
    return {
        "readers": len(readers),
        "images": int((five.sum(axis=1) >= 2).sum()),
        "kappa_binary": fleiss_kappa(binary) if len(readers) >= 2 else None,
        "kappa_5": fleiss_kappa(five) if len(readers) >= 2 else None,
    }


def extremes(ratings: Iterable[Rating], k: int = 6) -> dict[str, list[dict]]:
    """Synthetic images most often called real, and real images most often called synthetic."""
    by_image: dict[int, list[Rating]] = defaultdict(list)
    for r in ratings:
        by_image[r.image_id].append(r)
    rows = []
    for image_id, rs in by_image.items():
        wrong = sum(r.called_synthetic != r.synthetic for r in rs)
        mean = float(np.mean([r.rating for r in rs]))
        rows.append(
            {
                "image_id": image_id,
                "synthetic": rs[0].synthetic,
                "n": len(rs),
                "wrong": wrong,
                "wrong_ratio": wrong / len(rs),
                "mean_rating": mean,
            }
        )

    def top(synthetic: bool) -> list[dict]:
        sign = 1 if synthetic else -1  # synthetic: lowest mean first; real: highest mean first
        chosen = [r for r in rows if r["synthetic"] == synthetic and r["wrong"]]
        chosen.sort(key=lambda r: (-r["wrong_ratio"], sign * r["mean_rating"], r["image_id"]))
        return chosen[:k]

    return {"synthetic_called_real": top(True), "real_called_synthetic": top(False)}


def summarize(ratings: Sequence[Rating]) -> dict:
    """Everything the results page and API show: pooled, per reader, agreement, extremes."""
    per_reader: dict[str, list[Rating]] = defaultdict(list)
    for r in ratings:
        per_reader[r.reader].append(r)
    return {
        "threshold": f"rating >= {SYNTHETIC_FROM} calls an image synthetic",
        "pooled": detection(ratings),
        "readers": {name: detection(rs) for name, rs in sorted(per_reader.items())},
        "agreement": agreement(ratings),
        **extremes(ratings),
    }
