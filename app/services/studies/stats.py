"""Reader-study statistics: how well readers detect synthetic images, per reader and pooled.

Positive = synthetic. On the 5-point scale (1 definitely real ... 5 definitely synthetic) a
rating of 1-2 calls an image real, 4-5 calls it synthetic, and 3 is "unsure": its own category.
Accuracy is reported three ways: with unsure counted as "called real" (the binary call the
tables use), with unsure counted as "called synthetic", and over the decided answers only
(unsure left out), which the plain-language verdict uses. ROC AUC uses all five levels, so it
does not depend on any threshold.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

SYNTHETIC_FROM = 4  # ratings >= this call the image synthetic
UNSURE = 3
LEVELS = (1, 2, 3, 4, 5)
FAST_MS = 1000  # a read under a second is implausible for a radiologist looking at a slice
FAST_SHARE = 0.2  # a reader with more than this share of fast reads is flagged
CLASS_NAMES = {0: "normal", 1: "tumour"}


@dataclass(frozen=True)
class Rating:
    """One answered trial, reduced to what the statistics need."""

    reader: str
    image_id: int
    synthetic: bool
    rating: int
    usable: bool | None = None
    ms: int | None = None  # server-measured time from showing the image to the answer
    label: int | None = None  # 0 normal, 1 tumour, None unknown
    source: str = ""  # "synthetic", "real, held out" or "real, training"

    @property
    def called_synthetic(self) -> bool:
        return self.rating >= SYNTHETIC_FROM

    @property
    def category(self) -> str:
        return category(self.rating)

    @property
    def fast(self) -> bool:
        return self.ms is not None and self.ms < FAST_MS


def category(rating: int) -> str:
    """'real' (1-2), 'unsure' (3) or 'synthetic' (4-5): what the reader called the image."""
    return "unsure" if rating == UNSURE else ("synthetic" if rating > UNSURE else "real")


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
    out.update(unsure_views(syn, real))
    times = [r.ms for r in ratings if r.ms is not None]
    out["fast_reads"] = sum(r.fast for r in ratings)
    out["fast_share"] = _ratio(out["fast_reads"], len(times))
    out["fast_flag"] = bool(times) and out["fast_share"] > FAST_SHARE
    out["mean_ms"] = _num(np.mean(times)) if times else None
    out["median_ms"] = _num(np.median(times)) if times else None
    for name, group in (("synthetic", syn), ("real", real)):
        rated = [r.usable for r in group if r.usable is not None]
        out[f"usable_{name}"] = _ratio(sum(rated), len(rated))
    return out


def _binomial(k: int, n: int) -> tuple[float | None, list | None]:
    """Exact two-sided binomial p against 50 % and the exact 95 % interval of k / n."""
    if not n:
        return None, None
    test = stats.binomtest(k, n, 0.5, alternative="two-sided")
    ci = test.proportion_ci(confidence_level=0.95, method="exact")
    return _num(test.pvalue), [_num(ci.low), _num(ci.high)]


def unsure_views(syn: Sequence[Rating], real: Sequence[Rating]) -> dict:
    """The three-way counts (called real / unsure / called synthetic) per truth, and accuracy
    with unsure as real, with unsure as synthetic, and over the decided answers only."""
    out: dict = {}
    for name, group in (("synthetic", syn), ("real", real)):
        out[f"calls_{name}"] = {c: sum(r.category == c for r in group)
                                for c in ("real", "unsure", "synthetic")}  # fmt: skip
    cs, cr = out["calls_synthetic"], out["calls_real"]
    n = len(syn) + len(real)
    out["n_unsure"] = cs["unsure"] + cr["unsure"]
    out["accuracy_unsure_as_real"] = _ratio(cs["synthetic"] + cr["real"] + cr["unsure"], n)
    out["accuracy_unsure_as_synthetic"] = _ratio(cs["synthetic"] + cs["unsure"] + cr["real"], n)
    decided_ok, decided = cs["synthetic"] + cr["real"], n - out["n_unsure"]
    out["n_decided"] = decided
    out["accuracy_decided"] = _ratio(decided_ok, decided)
    out["accuracy_decided_p"], out["accuracy_decided_ci"] = _binomial(decided_ok, decided)
    return out


def verdict(pooled: dict) -> str | None:
    """One plain sentence for a radiologist, from the decided answers with their 95 % CI."""
    acc, ci, n = pooled.get("accuracy_decided"), pooled.get("accuracy_decided_ci"), pooled["n"]
    if acc is None or ci is None:
        return None if not n else "Every answer was “unsure”: the readers could not decide."
    span = f"{100 * acc:.0f} % of images [{100 * ci[0]:.0f}–{100 * ci[1]:.0f}]"
    unsure = pooled["n_unsure"]
    left = f" ({unsure} of {n} answers were “unsure” and are left out)" if unsure else ""
    if ci[0] > 0.5:
        tail = "the images are not yet indistinguishable from real ones."
    elif ci[1] < 0.5:
        tail = "readers took synthetic images for real ones more often than chance."
    else:
        tail = ("that is consistent with guessing: readers could not reliably tell them apart"
                + (" (few answers: the interval is wide)." if ci[1] - ci[0] > 0.3 else "."))
    return f"Readers told synthetic from real in {span}{left}; {tail}"


def roc_points(ratings: Sequence[Rating]) -> list[tuple[float, float]]:
    """(false positive rate, true positive rate) for every threshold on the five levels,
    from (0, 0) to (1, 1): the empirical ROC curve."""
    syn = [r.rating for r in ratings if r.synthetic]
    real = [r.rating for r in ratings if not r.synthetic]
    if not syn or not real:
        return []
    points = [(0.0, 0.0)]
    for t in sorted(LEVELS, reverse=True):
        fpr = sum(x >= t for x in real) / len(real)
        tpr = sum(x >= t for x in syn) / len(syn)
        points.append((fpr, tpr))
    return points


def split_by(ratings: Sequence[Rating], key) -> dict[str, dict]:
    """Detection statistics per group (by class, by source), synthetic and real pooled within
    a group where both exist."""
    groups: dict[str, list[Rating]] = defaultdict(list)
    for r in ratings:
        groups[key(r)].append(r)
    return {name: detection(rs) for name, rs in sorted(groups.items())}


def class_name(r: Rating) -> str:
    return CLASS_NAMES.get(r.label, "class unknown") if r.label is not None else "class unknown"


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
    pooled = detection(ratings)
    return {
        "threshold": f"rating >= {SYNTHETIC_FROM} calls an image synthetic, 3 is unsure",
        "fast_ms": FAST_MS,
        "pooled": pooled,
        "verdict": verdict(pooled),
        "roc": roc_points(ratings),
        "by_class": split_by(ratings, class_name),
        "by_source": split_by(ratings, lambda r: r.source or "unknown"),
        "readers": {name: detection(rs) for name, rs in sorted(per_reader.items())},
        "agreement": agreement(ratings),
        **extremes(ratings),
    }
