"""Reader-study statistics against direct SciPy / NumPy computations on planted answers."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from app.services.studies.stats import (
    Rating,
    agreement,
    detection,
    extremes,
    fleiss_kappa,
    roc_auc,
    summarize,
)


def _planted(seed: int = 0, readers: int = 3, n_images: int = 40) -> list[Rating]:
    """Readers who lean towards the truth, with noise; half the images synthetic."""
    rng = np.random.default_rng(seed)
    out = []
    for r in range(readers):
        for image in range(n_images):
            synthetic = image % 2 == 1
            rating = int(np.clip(round(3 + (0.8 + 0.3 * r) * (1 if synthetic else -1)
                                       + rng.normal(0, 1.3)), 1, 5))  # fmt: skip
            out.append(Rating(f"reader{r}", image, synthetic, rating,
                              usable=bool(rng.random() < (0.4 if synthetic else 0.8)),
                              ms=int(rng.integers(500, 9000))))  # fmt: skip
    return out


def _direct(ratings: list[Rating]) -> dict:
    y = np.array([r.synthetic for r in ratings])
    s = np.array([r.rating for r in ratings])
    call = s >= 4
    syn, real = s[y], s[~y]
    u = stats.mannwhitneyu(syn, real, alternative="two-sided").statistic
    return {
        "accuracy": np.mean(call == y),
        "sensitivity": np.mean(call[y]),
        "specificity": np.mean(~call[~y]),
        "false_positive_rate": np.mean(call[~y]),
        "false_negative_rate": np.mean(~call[y]),
        "binomial_p": stats.binomtest(int(np.sum(call == y)), len(y), 0.5).pvalue,
        "auc": u / (len(syn) * len(real)),
        "mean_rating_difference": syn.mean() - real.mean(),
        "ks_statistic": stats.ks_2samp(syn, real).statistic,
        "ks_p": stats.ks_2samp(syn, real).pvalue,
        "mean_ms": np.mean([r.ms for r in ratings]),
        "usable_synthetic": np.mean([r.usable for r in ratings if r.synthetic]),
        "usable_real": np.mean([r.usable for r in ratings if not r.synthetic]),
    }


def test_detection_matches_direct_scipy_computations_per_reader_and_pooled():
    ratings = _planted()
    summary = summarize(ratings)
    groups = {"pooled": ratings} | {
        name: [r for r in ratings if r.reader == name] for name in ("reader0", "reader1", "reader2")
    }
    for name, group in groups.items():
        got = summary["pooled"] if name == "pooled" else summary["readers"][name]
        for key, want in _direct(group).items():
            assert got[key] == pytest.approx(want, rel=1e-12, abs=1e-12), (name, key)
        assert got["tp"] + got["fn"] == got["n_synthetic"] == len(group) // 2
    assert 0.5 < summary["pooled"]["auc"] < 1  # the planted readers do better than chance


def test_auc_counts_ties_as_half_and_needs_both_classes():
    assert roc_auc([5, 5], [1, 1]) == 1.0
    assert roc_auc([1, 1], [5, 5]) == 0.0
    assert roc_auc([3], [3]) == 0.5
    assert roc_auc([4, 3], [3, 1]) == pytest.approx((1 + 1 + 0.5 + 1) / 4)
    assert roc_auc([], [1]) is None


def test_unsure_counts_as_not_detected_and_empty_input_is_safe():
    d = detection([Rating("a", 1, True, 3), Rating("a", 2, False, 3)])
    assert (d["tp"], d["fn"], d["tn"], d["fp"]) == (0, 1, 1, 0) and d["accuracy"] == 0.5
    assert d["binomial_p"] == 1.0 and d["auc"] == 0.5
    empty = summarize([])
    assert empty["pooled"]["n"] == 0 and empty["pooled"]["accuracy"] is None
    assert empty["agreement"]["kappa_binary"] is None and empty["synthetic_called_real"] == []
    one_class = detection([Rating("a", 1, True, 5)])
    assert one_class["specificity"] is None and one_class["ks_p"] is None


def test_fleiss_kappa_matches_the_textbook_example():
    # Fleiss (1971) as worked in Wikipedia's "Fleiss' kappa": 10 subjects, 14 raters,
    # 5 categories; P-bar = 0.378, P_e = 0.213, kappa = 0.210.
    table = np.array([
        [0, 0, 0, 0, 14], [0, 2, 6, 4, 2], [0, 0, 3, 5, 6], [0, 3, 9, 2, 0], [2, 2, 8, 1, 1],
        [7, 7, 0, 0, 0], [3, 2, 6, 3, 0], [2, 5, 3, 2, 2], [6, 5, 2, 1, 0], [0, 2, 2, 3, 7],
    ])  # fmt: skip
    assert fleiss_kappa(table) == pytest.approx(0.20993, abs=5e-5)
    # By hand: 2 raters, 5 subjects, binary; they agree on 4 of 5.
    # P_i = 1, 1, 1, 1, 0 -> P-bar = 0.8; p = (5/10, 5/10) -> P_e = 0.5; kappa = 0.3 / 0.5 = 0.6.
    assert fleiss_kappa(np.array([[2, 0], [0, 2], [2, 0], [0, 2], [1, 1]])) == pytest.approx(0.6)
    assert fleiss_kappa(np.array([[2, 0], [2, 0]])) is None  # one category only: undefined


def test_agreement_builds_the_count_table_from_answers():
    # Two readers, five images: the by-hand binary example above on the call (>= 4 synthetic).
    calls = {1: (5, 4), 2: (1, 2), 3: (4, 5), 4: (1, 1), 5: (5, 1)}
    ratings = [Rating(f"r{k}", image, image % 2 == 0, v[k])
               for image, v in calls.items() for k in range(2)]  # fmt: skip
    ag = agreement(ratings)
    assert ag["readers"] == 2 and ag["images"] == 5
    assert ag["kappa_binary"] == pytest.approx(0.6)
    five = np.array([[0, 0, 0, 1, 1], [1, 1, 0, 0, 0], [0, 0, 0, 1, 1], [2, 0, 0, 0, 0],
                     [1, 0, 0, 0, 1]])  # fmt: skip
    assert ag["kappa_5"] == pytest.approx(fleiss_kappa(five))
    assert agreement(ratings[:1])["kappa_binary"] is None  # one reader: no agreement


def test_extremes_list_the_most_misjudged_images_first():
    ratings = [
        Rating("a", 1, True, 1), Rating("b", 1, True, 2),  # synthetic, both called it real
        Rating("a", 2, True, 2), Rating("b", 2, True, 5),  # synthetic, one called it real
        Rating("a", 3, True, 5), Rating("b", 3, True, 5),  # synthetic, never fooled anyone
        Rating("a", 4, False, 5), Rating("b", 4, False, 4),  # real, both called it synthetic
        Rating("a", 5, False, 1), Rating("b", 5, False, 1),
    ]  # fmt: skip
    ex = extremes(ratings)
    assert [r["image_id"] for r in ex["synthetic_called_real"]] == [1, 2]
    assert ex["synthetic_called_real"][0]["wrong_ratio"] == 1.0
    assert [r["image_id"] for r in ex["real_called_synthetic"]] == [4]


def _r(synthetic: bool, rating: int, ms: int = 5000, label: int | None = None, i: int = 0):
    return Rating(reader="r", image_id=i, synthetic=synthetic, rating=rating, ms=ms, label=label,
                  source="synthetic" if synthetic else "real, held out")  # fmt: skip


def test_unsure_is_its_own_category_and_accuracy_is_given_three_ways():
    ratings = [_r(True, 5), _r(True, 3), _r(False, 1), _r(False, 3)]
    d = detection(ratings)
    assert d["calls_synthetic"] == {"real": 0, "unsure": 1, "synthetic": 1}
    assert d["calls_real"] == {"real": 1, "unsure": 1, "synthetic": 0}
    assert d["accuracy_unsure_as_real"] == 0.75  # the real image rated 3 is "correct"
    assert d["accuracy_unsure_as_synthetic"] == 0.75
    assert d["accuracy_decided"] == 1.0 and d["n_decided"] == 2 and d["n_unsure"] == 2


def test_verdict_reads_plainly_with_its_interval():
    sure = [_r(True, 5, i=i) for i in range(40)] + [_r(False, 1, i=i) for i in range(40)]
    text = summarize(sure)["verdict"]
    assert text.startswith("Readers told synthetic from real in 100 % of images [")
    assert text.endswith("the images are not yet indistinguishable from real ones.")
    guess = [_r(i % 2 == 0, 5 if i % 4 < 2 else 1, i=i) for i in range(40)]
    assert "consistent with guessing" in summarize(guess)["verdict"]
    assert "“unsure”" in summarize([*sure, _r(True, 3)])["verdict"]


def test_roc_runs_from_0_0_to_1_1_and_fast_reads_are_flagged():
    ratings = [_r(True, 4), _r(True, 2), _r(False, 1, ms=300), _r(False, 4, ms=200)]
    out = summarize(ratings)
    assert out["roc"][0] == (0.0, 0.0) and out["roc"][-1] == (1.0, 1.0)
    assert (0.5, 0.5) in out["roc"]  # threshold 4: one of each side called synthetic
    assert out["pooled"]["fast_reads"] == 2 and out["pooled"]["fast_flag"]


def test_results_split_by_class_and_by_source():
    ratings = [_r(True, 5, label=1), _r(False, 1, label=1), _r(True, 1, label=0),
               _r(False, 1, label=0)]  # fmt: skip
    out = summarize(ratings)
    assert set(out["by_class"]) == {"tumour", "normal"}
    assert out["by_class"]["tumour"]["accuracy"] == 1.0
    assert out["by_class"]["normal"]["accuracy"] == 0.5
    assert set(out["by_source"]) == {"synthetic", "real, held out"}
