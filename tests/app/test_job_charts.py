"""The job page's charts: a colour key per series, fitting y labels, hover values, FID off,
and a second run compared on the same chart."""

from __future__ import annotations

from app.presentation import charts

ROWS = [{"kimg": k / 4, "loss_G": 1.0 + k, "loss_D": 0.5, "augment_p": 0.001 * k}
        for k in range(1, 5)]  # fmt: skip


def test_every_series_has_a_key_and_every_point_a_hover_value():
    losses = str(charts.job_charts(ROWS)[0])
    assert losses.count('class="chart-key"') == 2
    assert "<title>loss_G: 5 at 1.000 kimg</title>" in losses


def test_long_y_labels_get_room():
    narrow = str(charts.line_chart("x", {"a": [(0, 1), (1, 2)]}))
    wide = str(charts.line_chart("x", {"a": [(0, 0.000123), (1, 0.000456)]}))
    x_of = lambda svg: float(svg.split('class="chart-frame"')[0].rsplit('x="', 1)[1].split('"')[0])  # noqa: E731
    assert x_of(wide) > x_of(narrow)


def test_fid_off_says_so_and_a_compared_run_is_dashed():
    _, _, fid = charts.job_charts(ROWS, fid_on=False)
    assert "FID tracking is off" in str(fid)
    other = {"label": "job 7", "rows": [{"kimg": 0.5, "loss_G": 3.0, "loss_D": 1.0}]}
    losses = str(charts.job_charts(ROWS, compare=other)[0])
    assert "loss_G (job 7)" in losses and 'stroke-dasharray="4 2"' in losses
