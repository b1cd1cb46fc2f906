"""The reader study's ROC curve as a small inline SVG (no JavaScript, no chart library)."""

from __future__ import annotations

from collections.abc import Sequence

from markupsafe import Markup, escape

SIZE, PAD = 240, 34


def _xy(fpr: float, tpr: float) -> tuple[float, float]:
    span = SIZE - 2 * PAD
    return PAD + fpr * span, SIZE - PAD - tpr * span


def roc_svg(points: Sequence[Sequence[float]], auc: float | None, title: str = "") -> Markup:
    """Empirical ROC (false positive rate → true positive rate) with the chance diagonal;
    each point is one threshold on the five-level scale."""
    if not points:
        return Markup('<p class="muted">No ROC curve: it needs answers on both real and '
                      "synthetic images.</p>")  # fmt: skip
    line = " ".join("{:.1f},{:.1f}".format(*_xy(f, t)) for f, t in points)
    dots = "".join(
        '<circle cx="{:.1f}" cy="{:.1f}" r="2.5"><title>FPR {:.2f}, TPR {:.2f}</title></circle>'
        .format(*_xy(f, t), f, t) for f, t in points[1:-1]
    )  # fmt: skip
    x0, y0 = _xy(0, 0)
    x1, y1 = _xy(1, 1)
    label = f"AUC {auc:.2f}" if auc is not None else "AUC —"
    ticks = "".join(
        f'<text x="{_xy(v, 0)[0]:.1f}" y="{y0 + 14:.1f}" text-anchor="middle">{v:g}</text>'
        f'<text x="{x0 - 6:.1f}" y="{_xy(0, v)[1] + 4:.1f}" text-anchor="end">{v:g}</text>'
        for v in (0, 0.5, 1)
    )
    return Markup(
        f'<svg class="roc" viewBox="0 0 {SIZE} {SIZE}" width="{SIZE}" height="{SIZE}" '
        f'role="img" aria-label="ROC curve, {escape(label)}">'
        f"<title>{escape(title or 'ROC curve of the readers')}</title>"
        f'<rect x="{x0}" y="{y1}" width="{x1 - x0}" height="{y0 - y1}" fill="none" '
        'stroke="currentColor" stroke-opacity="0.3"/>'
        f'<line x1="{x0}" y1="{y0}" x2="{x1}" y2="{y1}" stroke="currentColor" '
        'stroke-dasharray="4 3" stroke-opacity="0.5"/>'
        f'<polyline points="{line}" fill="none" stroke="#c0392b" stroke-width="2"/>'
        f'<g fill="#c0392b">{dots}</g>'
        f'<g font-size="10" fill="currentColor">{ticks}'
        f'<text x="{(x0 + x1) / 2}" y="{SIZE - 4}" text-anchor="middle">'
        "real called synthetic (FPR)</text>"
        f'<text transform="translate(10 {(y0 + y1) / 2}) rotate(-90)" text-anchor="middle">'
        "synthetic detected (TPR)</text>"
        f'<text x="{x1 - 4}" y="{y0 - 8}" text-anchor="end" font-size="12">{label}</text></g>'
        "</svg>"
    )
