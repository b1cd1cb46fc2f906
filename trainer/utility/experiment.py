"""Arms x fractions x seeds: train each, score it on the same test slices, summarise.

Arms: `real` (a fraction of the real training slices), `real+aug` (the same with standard
augmentation), `real+syn:K` (the same plus K synthetic pairs per real slice), `syn` / `syn:K`
(K synthetic pairs per real slice of that fraction, no real ones). For a seed, the real subsets
are nested across fractions; every arm trains for the same number of steps.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from trainer.utility import inference, stats, tasks
from trainer.utility.data import Samples, UtilityError

_ARM = re.compile(r"^(real|real\+aug|real\+syn:(\d+(\.\d+)?)|syn(:(\d+(\.\d+)?))?)$")


@dataclass(frozen=True)
class Arm:
    name: str
    real: bool
    aug: bool = False
    syn_ratio: float = 0.0


def parse_arms(text: str) -> list[Arm]:
    """'real,real+aug,real+syn:1,real+syn:4,syn' -> arms, `real` first (the reference)."""
    arms: list[Arm] = []
    for raw in text.split(","):
        name = raw.strip().lower()
        m = _ARM.match(name)
        if not m:
            raise UtilityError(f"unknown arm {raw!r}: use real, real+aug, real+syn:K, syn[:K]")
        if name == "real":
            arm = Arm(name, True)
        elif name == "real+aug":
            arm = Arm(name, True, aug=True)
        elif name.startswith("real+syn"):
            arm = Arm(name, True, syn_ratio=float(m.group(2)))
        else:
            arm = Arm("syn" if not m.group(5) else name, False, syn_ratio=float(m.group(5) or 1))
        if arm.syn_ratio < 0 or arm.syn_ratio > 64:
            raise UtilityError(f"{raw}: the synthetic ratio must be between 0 and 64")
        if arm not in arms:
            arms.append(arm)
    real = [a for a in arms if a.name == "real"] or [Arm("real", True)]
    return real + [a for a in arms if a.name != "real"]


def parse_fractions(text: str) -> list[float]:
    try:
        fr = sorted({float(v) for v in text.split(",") if v.strip()})
    except ValueError as e:
        raise UtilityError(f"--fractions: {text!r} is not a list of numbers") from e
    if not fr or fr[0] <= 0 or fr[-1] > 1:
        raise UtilityError("--fractions must lie in (0, 1], e.g. 0.25,0.5,1")
    return fr


@dataclass
class Plan:
    task: str
    arms: list[Arm]
    fractions: list[float]
    seeds: int
    spec: tasks.TrainSpec
    n_train: int
    runs: list[tuple[Arm, float, int]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.runs = [
            (a, f, s) for f in self.fractions for a in self.arms for s in range(self.seeds)
        ]

    def n_real(self, fraction: float) -> int:
        return max(2, min(self.n_train, round(fraction * self.n_train)))

    def counts(self, arm: Arm, fraction: float) -> tuple[int, int]:
        """(real, synthetic) slices an arm trains on at a fraction."""
        n = self.n_real(fraction)
        return (n if arm.real else 0), round(arm.syn_ratio * n)

    @property
    def pool_size(self) -> int:
        return max([self.counts(a, f)[1] for a, f, _ in self.runs] + [0])

    @property
    def total_steps(self) -> int:
        return len(self.runs) * self.spec.steps


def training_set(plan: Plan, arm: Arm, fraction: float, seed: int, real: Samples,
                 pool: Samples | None) -> Samples:  # fmt: skip
    """The arm's slices for one seed: a nested real subset plus a seeded synthetic subset."""
    n_real, n_syn = plan.counts(arm, fraction)
    parts = []
    if n_real:
        order = np.random.default_rng([seed, 0]).permutation(len(real))
        parts.append(real.subset(order[:n_real]))
    if n_syn:
        assert pool is not None
        order = np.random.default_rng([seed, 1]).permutation(len(pool))
        parts.append(pool.subset(order[:n_syn]))
    return Samples.concat(parts)


def run_all(plan: Plan, real: Samples, test: Samples, pool: Samples | None, device,
            progress: Callable[[int, str | None], None]) -> dict:  # fmt: skip
    """Per (arm, fraction): per-seed per-slice scores on the test set."""
    scores: dict = {}
    done = 0
    for arm, fraction, seed in plan.runs:
        data = training_set(plan, arm, fraction, seed, real, pool)
        base = done

        def step(k: int, base: int = base) -> None:
            progress(base + k, None)

        model = tasks.train(plan.task, data, plan.spec, seed, arm.aug, device, step)
        s = tasks.score(plan.task, model, test, device)
        scores.setdefault((arm.name, fraction), []).append(s)
        done += plan.spec.steps
        progress(done, f"{arm.name} at {fraction:g} of the real slices, seed {seed}: "
                       f"{_seed_score(plan.task, s, test):.3f}")  # fmt: skip
    return scores


def _seed_score(task: str, s: dict, test: Samples) -> float:
    if task == "segmentation":
        return float(np.mean(s["liver"]))
    return stats.roc_auc(test.classes.numpy(), s["probability"])


def summarise(plan: Plan, scores: dict, test: Samples, patients: list[str]) -> list[dict]:
    """Per arm and fraction: the mean over seeds x held-out patients, its 95% interval with the
    seed and the patient variation in it, the paired difference to `real` (same seeds and
    patients left out), and the raw per-seed, per-patient scores."""
    keys, groups = inference.patient_groups(patients)
    n_seeds, n_patients = plan.seeds, len(keys)
    labels = test.classes.numpy()
    tumour_slices = (test.masks == 2).flatten(1).any(1).numpy()
    results, reference = [], {}
    for fraction in plan.fractions:
        for arm in plan.arms:
            per_seed = scores[(arm.name, fraction)]
            stat, by_seed = _statistic(plan.task, per_seed, groups, labels)
            summary = inference.crossed(stat, n_seeds, n_patients)
            n_real, n_syn = plan.counts(arm, fraction)
            row = {"arm": arm.name, "fraction": fraction, "n_real": n_real,
                   "n_synthetic": n_syn, "n_real_available": plan.n_real(fraction),
                   "seeds": [round(_seed_score(plan.task, s, test), 6) for s in per_seed],
                   "mean": summary["mean"], "ci95": summary["ci95"], "diff_vs_real": None,
                   "per_patient": {"patients": keys, "n_slices": [len(g) for g in groups],
                                   "by_seed": by_seed}}  # fmt: skip
            if arm.name == "real":
                reference[fraction] = stat
            else:
                d = inference.difference(stat, reference[fraction], n_seeds, n_patients)
                row["diff_vs_real"] = {k: d[k] for k in ("mean", "ci95", "p")}
            if plan.task == "segmentation" and tumour_slices.any():
                row["tumour_dice"] = _tumour(per_seed, tumour_slices)
            results.append(row)
    return results


def _statistic(task: str, per_seed: list[dict], groups: list[np.ndarray],
               labels: np.ndarray) -> tuple[inference.Statistic, list | None]:  # fmt: skip
    """The arm's score as a function of (seeds, patients), and its raw [seed][patient] table
    (Dice; None for ROC AUC, which a single patient's slices cannot define)."""
    if task == "segmentation":
        table = np.array([[s["liver"][g].mean() for g in groups] for s in per_seed])
        return inference.mean_table(table), np.round(table, 6).tolist()

    def auc(s_idx: np.ndarray, p_idx: np.ndarray) -> float:
        idx = np.concatenate([groups[p] for p in p_idx])
        return float(np.mean([stats.roc_auc(labels[idx], per_seed[s]["probability"][idx])
                              for s in s_idx]))  # fmt: skip

    return auc, None


def _tumour(per_seed: list[dict], where: np.ndarray) -> dict:
    """Tumour Dice over the test slices that contain tumour (descriptive: a slice bootstrap)."""
    t = np.stack([s["tumour"] for s in per_seed], 1).mean(1)[where]
    sub = stats.resample_indices(len(t))
    s = stats.bootstrap_mean(t, sub)
    return {"mean": s["mean"], "ci95": s["ci95"], "n_slices": int(where.sum())}
