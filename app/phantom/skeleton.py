"""Bone in the phantom: lumbar/thoracic vertebrae with discs and posterior elements, ribs."""

from __future__ import annotations

import numpy as np

from app.phantom.anatomy import CANCELLOUS, CORTICAL, CSF, DISC, Anatomy
from app.phantom.shapes import Canvas, ellipse_distance, soft

LEVEL_MM = 31.0  # one vertebra plus its disc
DISC_MM = 8.0
RIB_GAP_MM = 30.0  # vertical distance between successive ribs at the same angle
RIB_RISE_MM = 170.0  # how much higher a rib sits posteriorly than anteriorly


def spine(c: Canvas, an: Anatomy, z: float) -> None:
    """Vertebral body (cortex and cancellous bone) or a disc, canal, arch and processes."""
    phase = z % LEVEL_MM
    y = an.spine_y
    if phase < DISC_MM:
        c.ellipse(0.0, y, 23.0, 18.0, DISC, label=0)
    else:
        c.ellipse(0.0, y, 22.0, 17.0, CORTICAL, label=0)
        c.ellipse(0.0, y, 19.5, 14.5, CANCELLOUS, label=0)
    canal_y = y - 17.0 - 10.0
    if phase > DISC_MM - 2:
        c.ellipse(0.0, canal_y, 15.0, 13.0, CORTICAL * 0.75, label=0)  # pedicles and laminae
        if 0.35 * LEVEL_MM < phase < 0.8 * LEVEL_MM:
            c.ellipse(0.0, canal_y - 20.0, 5.0, 15.0, CORTICAL * 0.75, label=0)
            for side in (-1, 1):
                c.ellipse(side * 26.0, canal_y + 2, 17.0, 5.5, 520.0, label=0, angle=-side * 0.2)
    c.ellipse(0.0, canal_y, 9.0, 8.0, CSF, label=0)


def ribs(c: Canvas, an: Anatomy, z: float) -> None:
    """Oblique ribs cut by the axial plane: short bright arcs in the body wall."""
    top = an.coverage + RIB_RISE_MM
    lowest = an.liver_range[0] * an.coverage - 0.55 * RIB_RISE_MM  # lowest anterior rib end
    if z < lowest:
        return
    x, y = c.grid.xs[:, None], c.grid.ys[None, :]
    cx, cy, ax, ay = an.cavity
    d = ellipse_distance(x, y, cx, cy, ax + 5.0, ay + 5.0, power=2.3)
    band = soft(np.abs(d) - 3.2, c.grid.edge)
    if not band.any():
        return
    theta = np.arctan2(y - cy, x - cx)
    posterior = -np.sin(theta)  # +1 at the back, -1 at the front
    height = z - RIB_RISE_MM * 0.5 * (posterior + 1.0)  # where this rib started anteriorly
    level = (height - an.rib_phase) % RIB_GAP_MM
    along = soft(np.abs(level - RIB_GAP_MM / 2) - 4.5, 2.0)
    keep = (np.abs(np.cos(theta)) > 0.45) | (posterior > 0.2)  # no ribs at the front midline
    keep &= posterior < 0.93  # nor behind the spine
    keep &= (height > lowest) & (height < top)
    cover = band * along * keep
    full = (slice(None), slice(None))
    c.paint(full, cover, 620.0, label=0)
    inner = soft(np.abs(d) - 1.6, c.grid.edge) * along * keep
    c.paint(full, inner, 260.0, label=0)
