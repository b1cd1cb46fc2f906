"""Painting one axial slice of the abdominal phantom: body wall, organs, vessels, bone.

Coordinates are millimetres in RAS (x toward the patient's right, y anterior, z superior);
`z` is measured from the lowest slice and `f = z / coverage` is the fraction up the scan.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from app.phantom.shapes import Canvas, ellipse_distance, soft

AIR, LUNG, FAT, VISCERAL_FAT, MUSCLE, LIVER = -1000.0, -860.0, -100.0, -90.0, 50.0, 60.0
SPLEEN, KIDNEY_CORTEX, KIDNEY_MEDULLA, AORTA, IVC, VESSEL = 52.0, 170.0, 95.0, 180.0, 115.0, 135.0
CORTICAL, CANCELLOUS, DISC, CSF, GAS, BOWEL, BILE = 700.0, 250.0, 90.0, 15.0, -900.0, 32.0, 8.0


@dataclass(frozen=True)
class Tumour:
    centre: tuple[float, float, float]  # mm
    radii: tuple[float, float, float]  # mm
    hu: float


@dataclass
class Anatomy:
    """Everything that varies between phantoms, drawn once from the seed."""

    coverage: float  # mm from the lowest to the highest slice centre
    body: tuple[float, float, float]  # half-width, half-depth, centre y
    fat: tuple[float, float, float]  # subcutaneous fat: anterior, lateral, posterior (mm)
    liver_range: tuple[float, float]  # fractions of the coverage: inferior tip, dome
    liver_scale: float
    lobulation: tuple[tuple[int, float, float], ...]  # (harmonic, amplitude mm, phase)
    kidney_z: tuple[float, float]  # right, left kidney centre (fraction)
    rib_phase: float  # mm
    tumours: tuple[Tumour, ...] = ()
    vessels: tuple[tuple[np.ndarray, np.ndarray, float], ...] = ()  # start, end, radius
    bowel: tuple[tuple[np.ndarray, float, float], ...] = ()  # polyline [n, 3], radius, content

    # Derived positions (mm), filled in by `layout`.
    cavity: tuple[float, float, float, float] = (0.0, 0.0, 0.0, 0.0)  # cx, cy, ax, ay
    muscle: tuple[float, float, float, float] = (0.0, 0.0, 0.0, 0.0)
    spine_y: float = 0.0

    def layout(self) -> Anatomy:
        a, b, cy = self.body
        front, back = cy + b, cy - b
        self.spine_y = back + self.fat[2] + 62.0
        wall = 9.0
        c_front, c_back = front - self.fat[0] - wall, self.spine_y - 30.0
        c_ax = a - self.fat[1] - wall
        self.cavity = (0.0, (c_front + c_back) / 2, c_ax, (c_front - c_back) / 2)
        m_front, m_back = c_front + wall, back + self.fat[2]
        self.muscle = (0.0, (m_front + m_back) / 2, c_ax + wall, (m_front - m_back) / 2)
        return self

    def liver_centre(self) -> tuple[float, float]:
        _, cy, ax, ay = self.cavity
        return 0.45 * ax, cy + 0.05 * ay


def _profile(f: float, lo: float, hi: float, peak: float = 0.5) -> float:
    """0 outside [lo, hi]; rises to 1 at `peak` (a fraction of the range), rounded at the top."""
    if not lo < f < hi:
        return 0.0
    t = (f - lo) / (hi - lo)
    if t < peak:
        return float((t / peak) ** 0.7)
    return float(np.sqrt(max(0.0, 1 - ((t - peak) / (1 - peak)) ** 2)))


def body_wall(c: Canvas, an: Anatomy) -> np.ndarray:
    """Skin, subcutaneous fat, abdominal muscle and the visceral-fat cavity; returns the cavity."""
    a, b, cy = an.body
    x, y = c.grid.xs[:, None], c.grid.ys[None, :]
    full = (slice(None), slice(None))
    e = c.grid.edge
    c.paint(full, soft(ellipse_distance(x, y, 0, cy, a, b, power=2.4), e), 20.0)
    c.paint(full, soft(ellipse_distance(x, y, 0, cy, a - 2, b - 2, power=2.4), e), FAT)
    mx, my, max_, may = an.muscle
    c.paint(full, soft(ellipse_distance(x, y, mx, my, max_, may, power=2.3), e), MUSCLE)
    cx, ccy, cax, cay = an.cavity
    cavity = soft(ellipse_distance(x, y, cx, ccy, cax, cay, power=2.3), e)
    c.paint(full, cavity, VISCERAL_FAT)
    for side in (-1, 1):  # paraspinal muscles
        c.ellipse(side * 32.0, an.spine_y - 48.0, 26.0, 24.0, MUSCLE)
    return cavity


def section(start: np.ndarray, end: np.ndarray, z: float) -> tuple | None:
    """Where a 3D segment crosses height z: centre (x, y), in-plane stretch and direction."""
    dz = end[2] - start[2]
    if dz == 0 or not min(start[2], end[2]) <= z <= max(start[2], end[2]):
        return None
    p = start + (z - start[2]) / dz * (end - start)
    d = end - start
    stretch = min(3.0, float(np.linalg.norm(d) / abs(dz)))
    return float(p[0]), float(p[1]), stretch, float(np.arctan2(d[1], d[0]))


def bowel(c: Canvas, an: Anatomy, cavity: np.ndarray, z: float) -> None:
    """Small-bowel loops (wall, fluid or gas content) meandering through mesenteric fat."""
    for points, radius, content in an.bowel:
        for start, end in zip(points[:-1], points[1:], strict=True):
            cut = section(start, end, z)
            if cut is None:
                continue
            x, y, stretch, angle = cut
            r = radius
            c.ellipse(x, y, r * stretch, r, BOWEL + 12, angle=angle, within=cavity)
            c.ellipse(x, y, (r - 3) * stretch, r - 3, content, angle=angle, within=cavity)


def colon(c: Canvas, an: Anatomy, f: float) -> None:
    """Ascending and descending colon with gas on the anterior side (lower abdomen)."""
    if f > an.liver_range[0] + 0.15:
        return
    _, cy, ax, _ = an.cavity
    for side in (-1, 1):
        cx = side * (ax - 26.0)
        c.ellipse(cx, cy - 5, 20.0, 18.0, 35.0)
        c.ellipse(cx, cy - 5 + 5, 14.0, 10.0, GAS)


def kidneys(c: Canvas, an: Anatomy, z: float) -> None:
    """Kidneys with an enhancing cortex, medulla and sinus fat, in perirenal fat."""
    for side, fz in ((1, an.kidney_z[0]), (-1, an.kidney_z[1])):
        dz = (z - fz * an.coverage) / 50.0
        if abs(dz) >= 1:
            continue
        s = np.sqrt(1 - dz * dz)
        cx, cy, ang = side * 66.0, an.spine_y + 6.0, side * 0.45
        c.ellipse(cx, cy, 29 * s + 3, 21 * s + 3, -80.0, label=0, angle=ang)
        c.ellipse(cx, cy, 29 * s, 21 * s, KIDNEY_CORTEX, label=0, angle=ang)
        c.ellipse(cx, cy, 29 * s - 6, 21 * s - 6, KIDNEY_MEDULLA, label=0, angle=ang)
        if s > 0.6:  # the hilum faces medially and anteriorly
            c.ellipse(cx - side * 13 * s, cy + 5, 9 * s, 6 * s, -70.0, label=0, angle=ang)


def spleen_and_stomach(c: Canvas, an: Anatomy, f: float) -> None:
    _, cy, ax, ay = an.cavity
    s = _profile(f, 0.52, 1.02)
    if s > 0:
        c.ellipse(-0.68 * ax, cy - 0.30 * ay, 30 * s, 62 * s, SPLEEN, label=0, angle=-0.6)
    s = _profile(f, an.liver_range[0] + 0.2, 1.0)
    if s > 0:
        sx, sy, rx, ry = -0.32 * ax, cy + 0.25 * ay, 44 * s, 36 * s
        c.ellipse(sx, sy, rx, ry, 40.0, label=0)
        lumen = c.ellipse(sx, sy, rx - 4, ry - 4, 12.0, label=0)
        box = c.grid.box(sx, sy, rx - 4, ry - 4)
        if lumen is not None and box is not None:
            _, y = c.grid.coords(box)
            air = soft(sy + 0.1 * ry - y, c.grid.edge) * lumen
            c.paint(box, air, -950.0)


def liver(c: Canvas, an: Anatomy, f: float, z: float, cavity: np.ndarray | None = None) -> None:
    """Right lobe (its tip lateral and low) plus a left lobe across the midline higher up."""
    lo, hi = an.liver_range
    s = _profile(f, lo, hi, peak=0.72) * an.liver_scale
    if s <= 0:
        return
    t = (f - lo) / (hi - lo)
    _, cy, ax, ay = an.cavity
    lx, ly = an.liver_centre()
    lx += 0.18 * ax * (1 - t)
    rx, ry = 0.58 * ax * s, 0.78 * ay * s * min(1.0, 0.55 + t)
    grow = max(0.0, min(1.0, (t - 0.35) / 0.3))  # the left lobe grows out of the right one
    left = grow * s
    box = c.grid.box(0.0, cy, ax + 8, ay + 8)
    if box is None:
        return
    x, y = c.grid.coords(box)
    d = ellipse_distance(x, y, lx, ly, rx, ry, power=2.3)
    theta = np.arctan2(y - ly, x - lx)
    for k, amp, phase in an.lobulation:
        d = d + amp * s * np.cos(k * theta + phase + 0.004 * z)
    cover = soft(d, c.grid.edge)
    if left > 0:
        cx, cy_left = lx + grow * (-0.05 * ax - lx), ly + grow * (cy + 0.5 * ay - ly)
        dl = ellipse_distance(x, y, cx, cy_left, 0.55 * ax * left, 0.3 * ay * left)
        cover = np.maximum(cover, soft(dl, c.grid.edge))
    if cavity is not None:  # the liver fills the space up to the abdominal wall, no further
        cover *= cavity[box]
    c.paint(box, cover, LIVER, label=1)
    _liver_vessels(c, an, z)


def _liver_vessels(c: Canvas, an: Anatomy, z: float) -> None:
    """Portal and hepatic vein branches: where each segment crosses this slice."""
    for start, end, radius in an.vessels:
        cut = section(start, end, z)
        if cut is None:
            continue
        px, py, stretch, angle = cut
        box = c.grid.box(px, py, radius * stretch, radius * stretch)
        if box is None:
            continue
        x, y = c.grid.coords(box)
        cover = soft(ellipse_distance(x, y, px, py, radius * stretch, radius, angle), 1.0)
        c.paint(box, cover * (c.labels[box] == 1), VESSEL)


def tumours(c: Canvas, an: Anatomy, z: float) -> None:
    """Hypodense lesions, kept inside the liver; labelled 2 where they cover the liver."""
    for t in an.tumours:
        dz = (z - t.centre[2]) / t.radii[2]
        if abs(dz) >= 1:
            continue
        s = np.sqrt(1 - dz * dz)
        box = c.grid.box(t.centre[0], t.centre[1], t.radii[0] * s, t.radii[1] * s)
        if box is None:
            continue
        x, y = c.grid.coords(box)
        d = ellipse_distance(x, y, t.centre[0], t.centre[1], t.radii[0] * s, t.radii[1] * s)
        cover = soft(d, 2.5) * (c.labels[box] == 1)
        c.paint(box, cover, t.hu)
        c.labels[box][cover > 0.5] = 2


def gallbladder(c: Canvas, an: Anatomy, f: float) -> None:
    lo, hi = an.liver_range
    s = _profile(f, lo + 0.05 * (hi - lo), lo + 0.4 * (hi - lo))
    if s > 0:
        _, cy, ax, ay = an.cavity
        c.ellipse(0.12 * ax, cy + 0.45 * ay, 17 * s, 13 * s, BILE, label=0, angle=0.7)


def great_vessels(c: Canvas, an: Anatomy) -> None:
    """Aorta (left of the midline) and inferior vena cava (right), anterior to the spine."""
    y = an.spine_y + 30.0
    c.ellipse(-14.0, y, 12.0, 12.0, 60.0, label=0)  # wall
    c.ellipse(-14.0, y, 10.5, 10.5, AORTA, label=0)
    c.ellipse(26.0, y - 2, 15.0, 11.0, IVC, label=0)


def psoas(c: Canvas, an: Anatomy, f: float) -> None:
    """Psoas muscles beside the vertebral bodies, growing toward the pelvis."""
    g = max(0.0, 1.0 - f / 0.55)
    if g > 0:
        for side in (-1, 1):
            c.ellipse(side * (30 + 12 * g), an.spine_y + 4, 8 + 14 * g, 9 + 9 * g, 48.0, label=0)


def lungs(c: Canvas, an: Anatomy, cavity: np.ndarray, z: float) -> None:
    """Lung bases above the two diaphragm domes, deepest in the posterior recesses."""
    dome = an.liver_range[1] * an.coverage
    if z < dome - 75:
        return
    x, y = c.grid.xs[:, None], c.grid.ys[None, :]
    _, cy, ax, _ = an.cavity
    right = dome - 0.005 * ((x - 0.4 * ax) ** 2 + 1.6 * (y - cy - 10) ** 2)
    left = dome - 12 - 0.005 * ((x + 0.4 * ax) ** 2 + 1.6 * (y - cy - 10) ** 2)
    height = np.logaddexp(right / 8.0, left / 8.0) * 8.0  # a smooth maximum of the two domes
    above = np.clip((z - height) / 4.0, 0, 1) * cavity
    heart = soft(ellipse_distance(x, y, -0.2 * ax, cy + 40, 58, 42), 2.0)
    heart *= np.clip((z - dome + 20) / 6.0, 0, 1)
    full = (slice(None), slice(None))
    c.paint(full, above * (1 - heart), LUNG, label=0)
    c.paint(full, above * heart, 42.0, label=0)
