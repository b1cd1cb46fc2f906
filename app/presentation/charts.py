"""Small line charts as inline SVG, drawn on the server from a job's stats (no JavaScript)."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

from markupsafe import Markup, escape

COLOURS = ("#4fa3e0", "#f0883e", "#3fb950", "#d2a8ff")


def series(rows: Iterable[Mapping[str, Any]], key: str) -> list[tuple[float, float]]:
    """(kimg, value) for rows that have a finite number under `key` (fid may be absent)."""
    out = []
    for row in rows:
        x, y = row.get("kimg"), row.get(key)
        if isinstance(x, int | float) and isinstance(y, int | float) and math.isfinite(y):
            out.append((float(x), float(y)))
    return out


def fid_series(rows: Iterable[Mapping[str, Any]]) -> list[tuple[float, float]]:
    """FID over kimg from stats lines: a "fid" key, or the first "fid…" key (e.g. fid50k)."""
    out = []
    for row in rows:
        key = "fid" if "fid" in row else next((k for k in row if k.startswith("fid")), None)
        if key:
            out += series([row], key)
    return out


def _fmt(v: float) -> str:
    return f"{v:.1e}" if 0 < abs(v) < 0.01 else f"{v:.3g}"


def line_chart(
    title: str,
    lines: Mapping[str, list[tuple[float, float]]],
    width: int = 360,
    height: int = 150,
) -> Markup:
    """One SVG with a polyline per series, min/max labels on both axes, and a legend."""
    pad_l, pad_r, pad_t, pad_b = 44, 8, 20, 22
    pts = [p for values in lines.values() for p in values]
    head = (
        f'<svg class="chart" viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
        f'role="img" aria-label="{escape(title)}"><title>{escape(title)}</title>'
        f'<text x="{pad_l}" y="13" class="chart-title">{escape(title)}</text>'
    )
    if not pts:
        return Markup(
            head + f'<text x="{width / 2}" y="{height / 2}" text-anchor="middle" '
            'class="chart-empty">no data yet</text></svg>'
        )
    x0, x1 = min(p[0] for p in pts), max(p[0] for p in pts)
    y0, y1 = min(p[1] for p in pts), max(p[1] for p in pts)
    x1 = x1 if x1 > x0 else x0 + 1
    y1 = y1 if y1 > y0 else y0 + (abs(y0) or 1) * 0.1
    w, h = width - pad_l - pad_r, height - pad_t - pad_b

    def sx(x: float) -> float:
        return pad_l + (x - x0) / (x1 - x0) * w

    def sy(y: float) -> float:
        return pad_t + h - (y - y0) / (y1 - y0) * h

    parts = [
        head,
        f'<rect x="{pad_l}" y="{pad_t}" width="{w}" height="{h}" class="chart-frame"/>',
        f'<text x="{pad_l - 4}" y="{pad_t + 8}" text-anchor="end">{_fmt(y1)}</text>',
        f'<text x="{pad_l - 4}" y="{pad_t + h}" text-anchor="end">{_fmt(y0)}</text>',
        f'<text x="{pad_l}" y="{height - 6}">{_fmt(x0)}</text>',
        f'<text x="{pad_l + w}" y="{height - 6}" text-anchor="end">{_fmt(x1)} kimg</text>',
    ]
    legend_x = pad_l + w
    for i, (name, values) in enumerate(lines.items()):
        colour = COLOURS[i % len(COLOURS)]
        if len(values) == 1:
            (x, y) = values[0]
            parts.append(f'<circle cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="2.5" fill="{colour}"/>')
        elif values:
            coords = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in values)
            parts.append(f'<polyline points="{coords}" fill="none" stroke="{colour}"/>')
        legend_x -= 8 + 7 * len(name)
        parts.append(
            f'<text x="{legend_x}" y="13" fill="{colour}" class="chart-legend">'
            f"{escape(name)}</text>"
        )
    parts.append("</svg>")
    return Markup("".join(parts))


def job_charts(
    rows: list[dict[str, Any]], metric_fid: list[tuple[float, float]] | None = None
) -> list[Markup]:
    """The job page's charts: losses, ADA p and FID over kimg. FID comes from the training
    stats and, as a second series, from completed metric runs on the job's snapshots."""
    fid = {"fid": fid_series(rows)}
    if metric_fid:
        fid["metric runs"] = metric_fid
    return [
        line_chart("Losses", {"loss_G": series(rows, "loss_G"), "loss_D": series(rows, "loss_D")}),
        line_chart("ADA p", {"augment_p": series(rows, "augment_p")}),
        line_chart("FID", fid),
    ]
