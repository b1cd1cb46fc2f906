"""Soft-edged 2D shapes on a millimetre grid, painted into a slice (used by the phantom)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Grid:
    """Pixel-centre coordinates of one axial slice in mm: xs along RAS x, ys along RAS y."""

    xs: np.ndarray  # [nx] float32
    ys: np.ndarray  # [ny] float32
    edge: float  # soft-edge width in mm (about one pixel)

    def box(self, cx: float, cy: float, rx: float, ry: float) -> tuple[slice, slice] | None:
        """Index window covering the rectangle centre ± radius (plus the soft edge)."""
        pad = 2 * self.edge
        i0, i1 = np.searchsorted(self.xs, [cx - rx - pad, cx + rx + pad])
        j0, j1 = np.searchsorted(self.ys, [cy - ry - pad, cy + ry + pad])
        if i1 <= i0 or j1 <= j0:
            return None
        return slice(int(i0), int(i1)), slice(int(j0), int(j1))

    def coords(self, box: tuple[slice, slice]) -> tuple[np.ndarray, np.ndarray]:
        """Broadcastable x [n, 1] and y [1, m] for the window."""
        return self.xs[box[0], None], self.ys[None, box[1]]


def soft(distance: np.ndarray, edge: float) -> np.ndarray:
    """Coverage in [0, 1] from an approximate signed distance in mm (negative inside)."""
    return np.clip(0.5 - distance / edge, 0.0, 1.0).astype(np.float32)


def ellipse_distance(
    x: np.ndarray,
    y: np.ndarray,
    cx: float,
    cy: float,
    ax: float,
    ay: float,
    angle: float = 0.0,
    power: float = 2.0,
) -> np.ndarray:
    """Approximate signed distance (mm) to a rotated super-ellipse with semi-axes ax, ay."""
    dx, dy = x - cx, y - cy
    if angle:
        c, s = np.cos(angle), np.sin(angle)
        dx, dy = c * dx + s * dy, -s * dx + c * dy
    if power == 2.0:
        r = np.sqrt((dx / ax) ** 2 + (dy / ay) ** 2)
    else:
        r = (np.abs(dx / ax) ** power + np.abs(dy / ay) ** power) ** (1.0 / power)
    return (r - 1.0) * min(ax, ay)


@dataclass
class Canvas:
    """One slice being painted: HU values and labels, with painter's-algorithm layering."""

    grid: Grid
    hu: np.ndarray  # [nx, ny] float32
    labels: np.ndarray  # [nx, ny] uint8

    def paint(
        self,
        box: tuple[slice, slice] | None,
        cover: np.ndarray,
        value: float | np.ndarray,
        label: int | None = None,
    ) -> None:
        """Blend `value` in with coverage `cover`; set `label` where the shape covers > 50%."""
        if box is None:
            return
        region = self.hu[box]
        region += cover * (value - region)
        if label is not None:
            self.labels[box][cover > 0.5] = label

    def ellipse(
        self,
        cx: float,
        cy: float,
        ax: float,
        ay: float,
        value: float,
        label: int | None = None,
        angle: float = 0.0,
        power: float = 2.0,
        within: np.ndarray | None = None,
    ) -> np.ndarray | None:
        """Paint a filled soft ellipse (clipped by a full-slice coverage `within`)."""
        if ax <= 0 or ay <= 0:
            return None
        reach = max(ax, ay) if angle else None
        box = self.grid.box(cx, cy, reach or ax, reach or ay)
        if box is None:
            return None
        x, y = self.grid.coords(box)
        cover = soft(ellipse_distance(x, y, cx, cy, ax, ay, angle, power), self.grid.edge)
        if within is not None:
            cover *= within[box]
        self.paint(box, cover, value, label)
        return cover
