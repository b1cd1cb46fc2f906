"""A utility run's results for people: the arms x fractions table, the learning curve with CI
bands (inline SVG), a one-sentence verdict, and CSV / JSON exports."""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Mapping
from typing import Any

from markupsafe import Markup, escape

COLOURS = ("#4fa3e0", "#f0883e", "#3fb950", "#d2a8ff", "#ff7b72", "#e3b341")
METRIC_NAMES = {"dice": "Dice", "roc_auc": "ROC AUC"}
CSV_COLUMNS = ["arm", "fraction", "n_real", "n_synthetic", "mean", "ci95_low", "ci95_high",
               "diff_vs_real", "diff_ci95_low", "diff_ci95_high", "p", "seeds",
               "dice_by_patient_and_seed"]  # fmt: skip
LEGACY = ("computed before seed x patient statistics (its interval covers test slices only, "
          "not training seeds or patients): run it again")  # fmt: skip


def arm_label(arm: str) -> str:
    """'real+syn:4' -> 'real + 1:4 synthetic', in the words of the verdict."""
    if arm == "real":
        return "real only"
    if arm == "real+aug":
        return "real + standard augmentation"
    if arm.startswith("real+syn:"):
        return f"real + 1:{arm.split(':')[1]} synthetic"
    ratio = arm.split(":")[1] if ":" in arm else "1"
    return "synthetic only" + ("" if ratio == "1" else f" ({ratio}x as many)")


def _action(arm: str) -> str:
    if arm == "real+aug":
        return "standard augmentation"
    if arm.startswith("real+syn:"):
        return f"adding 1:{arm.split(':')[1]} synthetic images"
    return "training on synthetic images only"


def _num(v: float) -> str:
    return f"{v:.2f}"


def _ci(ci: list | None) -> str:
    return f"[{_num(ci[0])}–{_num(ci[1])}]" if ci else "(no interval)"


def why_not_callable(result: Mapping[str, Any]) -> str | None:
    """None when the run's design lets a difference be called significant, else why not
    (fewer than 3 seeds or held-out patients, or a result from before seed x patient stats)."""
    design = result.get("inference")
    if not design:
        return LEGACY
    return None if design.get("can_call") else design.get("reason") or "too few seeds"


def is_clear(row: Mapping[str, Any], alpha: float = 0.05) -> bool:
    """A difference to real only that the design lets us call (p given and below alpha)."""
    d = row.get("diff_vs_real") or {}
    return d.get("p") is not None and d["p"] < alpha


def _p(p: float) -> str:
    return "p < 0.001" if p < 0.001 else f"p = {p:.3f}" if p < 0.01 else f"p = {p:.2f}"


def verdict(result: Mapping[str, Any], alpha: float = 0.05) -> str:
    """One plain sentence at the largest fraction: the clearest change against real only, or,
    when the design cannot support a call, the largest change in words that say so."""
    rows = result.get("results") or []
    if not rows:
        return "The run produced no results."
    metric = METRIC_NAMES.get(result.get("metric", ""), result.get("metric", "the score"))
    top = max(r["fraction"] for r in rows)
    ref = next((r for r in rows if r["arm"] == "real" and r["fraction"] == top), None)
    others = [r for r in rows if r["fraction"] == top and r.get("diff_vs_real")]
    if ref is None or not others:
        return f"Real only reached {metric} {_num(ref['mean'])} {_ci(ref['ci95'])}." if ref else ""
    reason = why_not_callable(result)
    clear = [r for r in others if is_clear(r, alpha)] if reason is None else []
    best = max(clear or others, key=lambda r: abs(r["diff_vs_real"]["mean"]) if clear
               else r["diff_vs_real"]["mean"])  # fmt: skip
    d = best["diff_vs_real"]
    base = f"{metric} from {_num(ref['mean'])} {_ci(ref['ci95'])} to {_num(best['mean'])} " \
           f"{_ci(best['ci95'])}"  # fmt: skip
    share = "all" if top == 1 else f"{top:.0%} of the"
    if reason is not None:
        return (f"Cannot be called significant: {reason}. With {share} real images, "
                f"{arm_label(best['arm'])} moved {base} (descriptive).")  # fmt: skip
    base += f", {_p(d['p'])}"
    if not clear:
        return (f"No arm changed {metric} clearly with {share} real images: the best, "
                f"{arm_label(best['arm'])}, moved {base}.")  # fmt: skip
    moved = "raised" if d["mean"] > 0 else "lowered"
    return f"With {share} real images, {_action(best['arm'])} {moved} {base}."


def table(result: Mapping[str, Any]) -> dict[str, Any]:
    """{"fractions": [...], "rows": [{"arm", "label", "cells": {fraction: row}}]}."""
    rows = result.get("results") or []
    fractions = sorted({r["fraction"] for r in rows})
    arms: dict[str, dict] = {}
    for r in rows:
        arms.setdefault(r["arm"], {"arm": r["arm"], "label": arm_label(r["arm"]), "cells": {}})
        arms[r["arm"]]["cells"][r["fraction"]] = r
    return {"fractions": fractions, "rows": list(arms.values())}


def to_csv(result: Mapping[str, Any]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(CSV_COLUMNS)
    for r in result.get("results") or []:
        d = r.get("diff_vs_real") or {}
        dci, ci = d.get("ci95") or [None, None], r.get("ci95") or [None, None]
        w.writerow([r["arm"], r["fraction"], r["n_real"], r["n_synthetic"], r["mean"],
                    ci[0], ci[1], d.get("mean"), dci[0], dci[1], d.get("p"),
                    " ".join(str(s) for s in r.get("seeds") or []),
                    _per_patient(r.get("per_patient"))])  # fmt: skip
    return buf.getvalue()


def _per_patient(raw: Mapping[str, Any] | None) -> str:
    """'volume 12: 0.81 0.79 0.80 | volume 14: …' (Dice of each seed), the raw units."""
    if not raw or not raw.get("by_seed"):
        return ""
    by_seed = raw["by_seed"]
    return " | ".join(f"volume {v}: " + " ".join(str(seed[j]) for seed in by_seed)
                      for j, v in enumerate(raw["patients"]))  # fmt: skip


def learning_curve(result: Mapping[str, Any], width: int = 640, height: int = 300) -> Markup:
    """Score against the number of real images (x: the fraction's real count), one line per
    arm with its 95% interval as a bar at each point (and a band between points); arms are
    set side by side at each x so no dot hides another; the legend sits under the plot."""
    rows = [r for r in result.get("results") or [] if math.isfinite(r["mean"])]
    if not rows:
        return Markup("<p class='muted'>No results to plot.</p>")
    metric = METRIC_NAMES.get(result.get("metric", ""), "score")
    arms = table(result)["rows"]
    legend_rows = (len(arms) + 1) // 2
    left, right, top, bottom = 48, 24, 12, 36
    plot_h = height - top - bottom
    height += 18 * legend_rows + 8
    xs = sorted({r.get("n_real_available", r["n_real"]) for r in rows})
    ends = [v for r in rows for v in (r.get("ci95") or [r["mean"]] * 2)] + [r["mean"] for r in rows]
    lo = min(min(ends), 0.0 if metric == "Dice" else 0.4)
    hi = max(max(ends), lo + 0.05)
    span_x = (xs[-1] - xs[0]) or 1
    inner = width - left - right - 60  # room for the side-by-side offsets at both ends

    def px(n: float) -> float:
        return left + 30 + (n - xs[0]) / span_x * inner if len(xs) > 1 else (width + left) / 2

    def py(v: float) -> float:
        return top + (hi - v) / (hi - lo) * plot_h

    out = [f"<svg class='chart utility-curve' viewBox='0 0 {width} {height}' role='img' "
           f"aria-label='{escape(metric)} against real images'>"]  # fmt: skip
    for k in range(5):
        v = lo + (hi - lo) * k / 4
        out.append(f"<line x1='{left}' x2='{width - right}' y1='{py(v):.1f}' y2='{py(v):.1f}' "
                   f"class='grid'/><text x='{left - 6}' y='{py(v) + 4:.1f}' "
                   f"text-anchor='end'>{v:.2f}</text>")  # fmt: skip
    axis_y = top + plot_h
    for n in xs:
        out.append(f"<text x='{px(n):.1f}' y='{axis_y + 16}' text-anchor='middle'>{n}</text>")
    out.append(f"<text x='{(width - right + left) / 2}' y='{axis_y + 32}' "
               f"text-anchor='middle'>real training images</text>")  # fmt: skip
    step = min(10.0, 40.0 / max(len(arms), 1))
    for i, arm in enumerate(arms):
        colour, dx = COLOURS[i % len(COLOURS)], (i - (len(arms) - 1) / 2) * step
        out += _series(arm, colour, lambda n, dx=dx: px(n) + dx, py, metric)
        lx, ly = left + (i % 2) * (width - left) / 2, axis_y + 52 + 18 * (i // 2)
        out.append(f"<rect x='{lx:.1f}' y='{ly - 9}' width='12' height='10' fill='{colour}'/>"
                   f"<text x='{lx + 18:.1f}' y='{ly}'>{escape(arm['label'])}</text>")  # fmt: skip
    return Markup("".join(out) + "</svg>")


def _series(arm: dict, colour: str, px, py, metric: str) -> list[str]:
    cells = sorted(arm["cells"].values(), key=lambda r: r["fraction"])
    pts = [(px(r.get("n_real_available", r["n_real"])), r) for r in cells]
    line = " ".join(f"{x:.1f},{py(r['mean']):.1f}" for x, r in pts)
    out = []
    if len(pts) > 1 and all(r.get("ci95") for _, r in pts):
        upper = " ".join(f"{x:.1f},{py(r['ci95'][1]):.1f}" for x, r in pts)
        lower = " ".join(f"{x:.1f},{py(r['ci95'][0]):.1f}" for x, r in reversed(pts))
        out.append(f"<polygon points='{upper} {lower}' fill='{colour}' fill-opacity='0.15'/>")
    out.append(f"<polyline points='{line}' fill='none' stroke='{colour}' stroke-width='2'/>")
    for x, r in pts:
        if r.get("ci95"):
            out.append(f"<line class='ci-bar' x1='{x:.1f}' x2='{x:.1f}' "
                       f"y1='{py(r['ci95'][0]):.1f}' y2='{py(r['ci95'][1]):.1f}' "
                       f"stroke='{colour}' stroke-width='1.5'/>")  # fmt: skip
        tip = f"{arm['label']}, {r['n_real']} real + {r['n_synthetic']} synthetic: " \
              f"{metric} {_num(r['mean'])} {_ci(r.get('ci95'))}"  # fmt: skip
        out.append(f"<circle cx='{x:.1f}' cy='{py(r['mean']):.1f}' r='3.5' fill='{colour}'>"
                   f"<title>{escape(tip)}</title></circle>")  # fmt: skip
    return out
