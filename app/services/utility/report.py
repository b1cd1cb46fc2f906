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
               "diff_vs_real", "diff_ci95_low", "diff_ci95_high", "p", "seeds"]  # fmt: skip


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


def _ci(ci: list) -> str:
    return f"[{_num(ci[0])}–{_num(ci[1])}]"


def _p(p: float) -> str:
    return "p < 0.001" if p < 0.001 else f"p = {p:.3f}" if p < 0.01 else f"p = {p:.2f}"


def verdict(result: Mapping[str, Any], alpha: float = 0.05) -> str:
    """One plain sentence at the largest fraction: the clearest change against real only."""
    rows = result.get("results") or []
    if not rows:
        return "The run produced no results."
    metric = METRIC_NAMES.get(result.get("metric", ""), result.get("metric", "the score"))
    top = max(r["fraction"] for r in rows)
    ref = next((r for r in rows if r["arm"] == "real" and r["fraction"] == top), None)
    others = [r for r in rows if r["fraction"] == top and r.get("diff_vs_real")]
    if ref is None or not others:
        return f"Real only reached {metric} {_num(ref['mean'])} {_ci(ref['ci95'])}." if ref else ""
    clear = [r for r in others if r["diff_vs_real"]["p"] < alpha]
    best = max(clear or others, key=lambda r: abs(r["diff_vs_real"]["mean"]) if clear
               else r["diff_vs_real"]["mean"])  # fmt: skip
    d = best["diff_vs_real"]
    base = f"{metric} from {_num(ref['mean'])} {_ci(ref['ci95'])} to {_num(best['mean'])} " \
           f"{_ci(best['ci95'])}, {_p(d['p'])}"  # fmt: skip
    share = "all" if top == 1 else f"{top:.0%} of the"
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
        dci = d.get("ci95") or [None, None]
        w.writerow([r["arm"], r["fraction"], r["n_real"], r["n_synthetic"], r["mean"],
                    r["ci95"][0], r["ci95"][1], d.get("mean"), dci[0], dci[1], d.get("p"),
                    " ".join(str(s) for s in r.get("seeds") or [])])  # fmt: skip
    return buf.getvalue()


def learning_curve(result: Mapping[str, Any], width: int = 640, height: int = 300) -> Markup:
    """Score against the number of real images (x: the fraction's real count), one line per
    arm with its 95% CI as a translucent band; hover a point for its numbers."""
    rows = [r for r in result.get("results") or [] if all(map(math.isfinite, r["ci95"]))]
    if not rows:
        return Markup("<p class='muted'>No results to plot.</p>")
    metric = METRIC_NAMES.get(result.get("metric", ""), "score")
    left, right, top, bottom = 48, 210, 12, 36
    xs = sorted({r.get("n_real_available", r["n_real"]) for r in rows})
    lo = min(min(r["ci95"][0] for r in rows), 0.0 if metric == "Dice" else 0.4)
    hi = max(max(r["ci95"][1] for r in rows), lo + 0.05)
    span_x = (xs[-1] - xs[0]) or 1

    def px(n: float) -> float:
        return left + (n - xs[0]) / span_x * (width - left - right) if len(xs) > 1 else left + 40

    def py(v: float) -> float:
        return top + (hi - v) / (hi - lo) * (height - top - bottom)

    out = [f"<svg class='chart utility-curve' viewBox='0 0 {width} {height}' role='img' "
           f"aria-label='{escape(metric)} against real images'>"]  # fmt: skip
    for k in range(5):
        v = lo + (hi - lo) * k / 4
        out.append(f"<line x1='{left}' x2='{width - right}' y1='{py(v):.1f}' y2='{py(v):.1f}' "
                   f"class='grid'/><text x='{left - 6}' y='{py(v) + 4:.1f}' "
                   f"text-anchor='end'>{v:.2f}</text>")  # fmt: skip
    for n in xs:
        out.append(f"<text x='{px(n):.1f}' y='{height - bottom + 16}' text-anchor='middle'>"
                   f"{n}</text>")  # fmt: skip
    out.append(f"<text x='{(width - right + left) / 2}' y='{height - 4}' text-anchor='middle'>"
               f"real training images</text>")  # fmt: skip
    for i, arm in enumerate(table(result)["rows"]):
        out += _series(arm, COLOURS[i % len(COLOURS)], px, py, metric)
        y = top + 14 + 18 * i
        out.append(f"<rect x='{width - right + 12}' y='{y - 9}' width='12' height='10' "
                   f"fill='{COLOURS[i % len(COLOURS)]}'/><text x='{width - right + 30}' "
                   f"y='{y}'>{escape(arm['label'])}</text>")  # fmt: skip
    return Markup("".join(out) + "</svg>")


def _series(arm: dict, colour: str, px, py, metric: str) -> list[str]:
    cells = sorted(arm["cells"].values(), key=lambda r: r["fraction"])
    pts = [(px(r.get("n_real_available", r["n_real"])), r) for r in cells]
    upper = " ".join(f"{x:.1f},{py(r['ci95'][1]):.1f}" for x, r in pts)
    lower = " ".join(f"{x:.1f},{py(r['ci95'][0]):.1f}" for x, r in reversed(pts))
    line = " ".join(f"{x:.1f},{py(r['mean']):.1f}" for x, r in pts)
    out = [
        f"<polygon points='{upper} {lower}' fill='{colour}' fill-opacity='0.15'/>",
        f"<polyline points='{line}' fill='none' stroke='{colour}' stroke-width='2'/>",
    ]
    for x, r in pts:
        tip = f"{arm['label']}, {r['n_real']} real + {r['n_synthetic']} synthetic: " \
              f"{metric} {_num(r['mean'])} {_ci(r['ci95'])}"  # fmt: skip
        out.append(f"<circle cx='{x:.1f}' cy='{py(r['mean']):.1f}' r='3.5' fill='{colour}'>"
                   f"<title>{escape(tip)}</title></circle>")  # fmt: skip
    return out
