"""Small line charts as inline SVG, drawn on the server from a job's stats (no JavaScript).

Each chart has a colour key (a swatch and name per series), y labels whose width fits them,
hover values (an SVG <title> on every point), and an optional second run drawn dashed.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

from markupsafe import Markup, escape

COLOURS = ("#4fa3e0", "#f0883e", "#3fb950", "#d2a8ff")
CHAR_W = 6.5  # px per character of the 11 px chart text
MAX_MARKERS = 120  # hover points per series (thinned evenly beyond this)


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


def _empty(head: str, width: int, height: int, text: str) -> Markup:
    return Markup(
        head + f'<text x="{width / 2}" y="{height / 2}" text-anchor="middle" '
        f'class="chart-empty">{escape(text)}</text></svg>'
    )


def _legend(names: list[tuple[str, str, bool]], x: float, y: float) -> list[str]:
    """A swatch (dashed for a compared run) and the name of each series, left to right."""
    parts = []
    for name, colour, dashed in names:
        dash = ' stroke-dasharray="4 2"' if dashed else ""
        parts.append(
            f'<g class="chart-key"><line x1="{x:.0f}" y1="{y - 4}" x2="{x + 14:.0f}" '
            f'y2="{y - 4}" stroke="{colour}" stroke-width="2"{dash}/>'
            f'<text x="{x + 18:.0f}" y="{y}" fill="{colour}" class="chart-legend">'
            f"{escape(name)}</text></g>"
        )
        x += 26 + CHAR_W * len(name)
    return parts


def line_chart(
    title: str,
    lines: Mapping[str, list[tuple[float, float]]],
    width: int = 360,
    height: int = 170,
    empty: str = "no data yet",
    dashed: Iterable[str] = (),
) -> Markup:
    """One SVG: a polyline per series, min/max labels on both axes, a key, hover values."""
    dashed = set(dashed)
    pts = [p for values in lines.values() for p in values]
    head = (
        f'<svg class="chart" viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
        f'role="img" aria-label="{escape(title)}"><title>{escape(title)}</title>'
        f'<text x="4" y="13" class="chart-title">{escape(title)}</text>'
    )
    if not pts:
        return _empty(head, width, height, empty)
    x0, x1 = min(p[0] for p in pts), max(p[0] for p in pts)
    y0, y1 = min(p[1] for p in pts), max(p[1] for p in pts)
    x1 = x1 if x1 > x0 else x0 + 1
    y1 = y1 if y1 > y0 else y0 + (abs(y0) or 1) * 0.1
    pad_l = 10 + CHAR_W * max(len(_fmt(y0)), len(_fmt(y1)))  # the y labels fit
    pad_r, pad_t, pad_b = 10, 34, 22
    w, h = width - pad_l - pad_r, height - pad_t - pad_b

    def sx(x: float) -> float:
        return pad_l + (x - x0) / (x1 - x0) * w

    def sy(y: float) -> float:
        return pad_t + h - (y - y0) / (y1 - y0) * h

    parts = [
        head,
        f'<rect x="{pad_l:.0f}" y="{pad_t}" width="{w:.0f}" height="{h}" class="chart-frame"/>',
        f'<text x="{pad_l - 4:.0f}" y="{pad_t + 8}" text-anchor="end">{_fmt(y1)}</text>',
        f'<text x="{pad_l - 4:.0f}" y="{pad_t + h}" text-anchor="end">{_fmt(y0)}</text>',
        f'<text x="{pad_l:.0f}" y="{height - 6}">{_fmt(x0)}</text>',
        f'<text x="{pad_l + w:.0f}" y="{height - 6}" text-anchor="end">{_fmt(x1)} kimg</text>',
    ]
    key = []
    for i, (name, values) in enumerate(lines.items()):
        colour = COLOURS[i % len(COLOURS)]
        dash = ' stroke-dasharray="4 2"' if name in dashed else ""
        if len(values) > 1:
            coords = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in values)
            parts.append(f'<polyline points="{coords}" fill="none" stroke="{colour}"{dash}/>')
        step = max(1, math.ceil(len(values) / MAX_MARKERS))
        for x, y in values[::step] if len(values) > 1 else values:
            r = 2.5 if len(values) == 1 else 2
            parts.append(
                f'<circle cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="{r}" fill="{colour}" '
                f'class="chart-point"><title>{escape(name)}: {_fmt(y)} at {x:.3f} kimg'
                "</title></circle>"
            )
        key.append((name, colour, name in dashed))
    parts += _legend(key, 4, 28)
    parts.append("</svg>")
    return Markup("".join(parts))


def job_charts(
    rows: list[dict[str, Any]],
    metric_fid: list[tuple[float, float]] | None = None,
    fid_on: bool = True,
    compare: Mapping[str, Any] | None = None,
) -> list[Markup]:
    """The job page's charts: losses, ADA p and FID over kimg. FID comes from the training
    stats and, as a second series, from completed metric runs on the job's snapshots; a
    compared run's series are drawn dashed on the same charts."""
    other = compare["rows"] if compare else []
    tag = f" ({compare['label']})" if compare else ""
    losses = {"loss_G": series(rows, "loss_G"), "loss_D": series(rows, "loss_D")}
    aug = {"augment_p": series(rows, "augment_p")}
    fid = {"fid": fid_series(rows)}
    if metric_fid:
        fid["metric runs"] = metric_fid
    if compare:
        losses |= {f"loss_G{tag}": series(other, "loss_G"), f"loss_D{tag}": series(other, "loss_D")}
        aug[f"augment_p{tag}"] = series(other, "augment_p")
        fid[f"fid{tag}"] = fid_series(other)
    dashed = [k for d in (losses, aug, fid) for k in d if tag and k.endswith(tag)]
    fid_empty = "no data yet" if fid_on else "FID tracking is off for this job"
    return [
        line_chart("Losses", losses, dashed=dashed),
        line_chart("ADA p", aug, dashed=dashed),
        line_chart("FID", fid, empty=fid_empty, dashed=dashed),
    ]
