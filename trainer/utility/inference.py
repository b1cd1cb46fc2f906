"""Inference over the units that vary: training seeds crossed with held-out patients.

Slices of one patient are not independent, and a result that holds for one seed may not hold
for the next, so an interval over test slices overstates what one run knows. Here a score is a
statistic of (chosen seeds, chosen patients); its variance is the sum of a leave-one-seed-out
and a leave-one-patient-out jackknife (the seed and the patient parts of a crossed random-effects
model, the residual counted in both: conservative), with a t interval on the lower bound of
Satterthwaite's degrees of freedom (its estimate is too optimistic with 3 to 10 units). Below
MIN_UNITS seeds or patients the result is descriptive: no p-value, not significant, and why.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from scipy import stats as sps

MIN_UNITS = 3  # seeds and held-out patients needed before a difference may be called

Statistic = Callable[[np.ndarray, np.ndarray], float]  # (seed indices, patient indices) -> score


def why_not_callable(n_seeds: int, n_patients: int) -> str | None:
    """None when the design allows a significance call, else the reason in plain words."""
    short = []
    if n_seeds < MIN_UNITS:
        short.append(f"{n_seeds} seed{'s' if n_seeds != 1 else ''}")
    if n_patients < MIN_UNITS:
        short.append(f"{n_patients} held-out patient{'s' if n_patients != 1 else ''}")
    if not short:
        return None
    return (f"only {' and '.join(short)}: at least {MIN_UNITS} seeds and {MIN_UNITS} "
            "held-out patients are needed to tell an effect from training and patient "
            "variation")  # fmt: skip


def _jackknife_var(values: np.ndarray) -> float:
    """Jackknife variance from leave-one-out values (NaN when any is undefined)."""
    n = len(values)
    if n < 2 or not np.all(np.isfinite(values)):
        return float("nan")
    return float((n - 1) / n * np.sum((values - values.mean()) ** 2))


def crossed(stat: Statistic, n_seeds: int, n_patients: int, level: float = 0.95) -> dict:
    """{"mean", "ci95", "se", "df", "p"}: the statistic on all units, its t interval and the
    two-sided p-value against 0 (p is None below MIN_UNITS seeds or patients; ci95 is None
    when a variance part cannot be estimated)."""
    seeds, patients = np.arange(n_seeds), np.arange(n_patients)
    mean = float(stat(seeds, patients))
    loo_s = np.array([stat(np.delete(seeds, i), patients) for i in seeds]) if n_seeds > 1 else []
    loo_p = (np.array([stat(seeds, np.delete(patients, j)) for j in patients])
             if n_patients > 1 else [])  # fmt: skip
    v_s, v_p = _jackknife_var(np.asarray(loo_s)), _jackknife_var(np.asarray(loo_p))
    out = {"mean": mean, "ci95": None, "se": None, "df": None, "p": None}
    if not (np.isfinite(mean) and np.isfinite(v_s) and np.isfinite(v_p)):
        return out
    var = v_s + v_p
    df = min(n_seeds, n_patients) - 1  # Satterthwaite's lower bound: too few units to fit it
    se = float(np.sqrt(var))
    half = float(sps.t.ppf(0.5 + level / 2, df)) * se
    out.update(ci95=[mean - half, mean + half], se=se, df=round(float(df), 2))
    if why_not_callable(n_seeds, n_patients) is None:
        out["p"] = 1.0 if se == 0 and mean == 0 else (
            0.0 if se == 0 else float(2 * sps.t.sf(abs(mean) / se, df)))  # fmt: skip
    return out


def difference(arm: Statistic, reference: Statistic, n_seeds: int, n_patients: int) -> dict:
    """`crossed` of arm - reference with the same seeds and patients left out (paired)."""

    def diff(s: np.ndarray, p: np.ndarray) -> float:
        return arm(s, p) - reference(s, p)

    return crossed(diff, n_seeds, n_patients)


def patient_groups(keys: Sequence[str]) -> tuple[list[str], list[np.ndarray]]:
    """Test slices grouped by patient key, in first-seen order: (keys, slice indices)."""
    order: dict[str, list[int]] = {}
    for i, k in enumerate(keys):
        order.setdefault(k, []).append(i)
    return list(order), [np.array(v) for v in order.values()]


def mean_table(per_seed_patient: np.ndarray) -> Statistic:
    """Statistic of a [seeds, patients] table: the mean over the chosen cells (every patient
    weighs the same, whatever its slice count)."""
    table = np.asarray(per_seed_patient, float)

    def stat(s: np.ndarray, p: np.ndarray) -> float:
        return float(table[np.ix_(s, p)].mean())

    return stat


def design(n_seeds: int, n_patients: int) -> dict:
    """What the result's statistics rest on, for the page and the JSON."""
    reason = why_not_callable(n_seeds, n_patients)
    return {"unit": "seed x held-out patient", "seeds": n_seeds, "patients": n_patients,
            "method": "seed and patient jackknife, t interval with min(seeds, patients) - 1 df",
            "can_call": reason is None, "reason": reason}  # fmt: skip
