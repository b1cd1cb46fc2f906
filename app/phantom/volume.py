"""Deterministic abdominal CT phantoms (int16 HU) with a LiTS label volume, written as NIfTI.

The arrays are built in RAS [x, y, z]; `write_phantom` stores them flipped to an LPS voxel
order (as many scanners and LiTS do), so ingest has to reorient them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import ndimage

from app.phantom import anatomy as A
from app.phantom.shapes import Canvas, Grid
from app.phantom.skeleton import ribs, spine

NOISE_HU = 12.0


@dataclass(frozen=True)
class Phantom:
    hu: np.ndarray  # int16 [x, y, z], RAS
    labels: np.ndarray  # uint8 [x, y, z], RAS: 0 background, 1 liver, 2 tumour
    affine: np.ndarray  # 4x4 RAS affine of the arrays above
    tumours: int

    @property
    def spacing(self) -> tuple[float, float, float]:
        return tuple(float(v) for v in np.linalg.norm(self.affine[:3, :3], axis=0))


def make_phantom(
    seed: int = 0, size: int = 512, slices: int | None = None, tumours: int | None = None
) -> Phantom:
    """A size×size×slices abdomen; the seed fixes anatomy, spacing, tumours and noise."""
    rng = np.random.default_rng(seed)
    fov = rng.uniform(360.0, 410.0)  # 0.70–0.80 mm pixels at 512²
    thickness = float(rng.choice([2.0, 2.5, 3.0, 5.0]))
    if slices is None:
        slices = int(round(rng.uniform(180.0, 220.0) / thickness)) + 1
    else:
        thickness = float(np.clip(200.0 / max(slices - 1, 1), 1.0, 5.0))
    n_tumours = int(rng.integers(0, 4)) if tumours is None else tumours
    spacing = fov / size
    grid = Grid(
        xs=((np.arange(size) - (size - 1) / 2) * spacing).astype(np.float32),
        ys=((np.arange(size) - (size - 1) / 2) * spacing).astype(np.float32),
        edge=max(spacing, 0.8),
    )
    an = _anatomy(rng, thickness * max(slices - 1, 1), fov)
    an.tumours = _place_tumours(rng, an, grid, n_tumours)
    hu = np.empty((size, size, slices), np.int16)
    labels = np.empty((size, size, slices), np.uint8)
    for k in range(slices):
        hu[:, :, k], labels[:, :, k] = _slice(an, grid, k * thickness, seed, k)
    affine = np.diag([spacing, spacing, thickness, 1.0])
    affine[:3, 3] = [grid.xs[0], grid.ys[0], -round(rng.uniform(150.0, 400.0), 1)]
    return Phantom(hu=hu, labels=labels, affine=affine, tumours=len(an.tumours))


def _anatomy(rng: np.random.Generator, coverage: float, fov: float) -> A.Anatomy:
    a = min(rng.uniform(150.0, 172.0), 0.46 * fov)
    b = min(rng.uniform(108.0, 125.0), 0.40 * fov)
    fat = (rng.uniform(18, 34), rng.uniform(14, 26), rng.uniform(10, 18))
    lo = rng.uniform(0.36, 0.44)
    an = A.Anatomy(
        coverage=coverage,
        body=(a, b, -12.0),
        fat=fat,
        liver_range=(lo, rng.uniform(0.95, 1.0)),
        liver_scale=rng.uniform(0.82, 1.05),
        lobulation=tuple((k, rng.uniform(1.0, 5.0), rng.uniform(0, 2 * np.pi)) for k in (2, 3, 5)),
        kidney_z=(rng.uniform(0.22, 0.3), rng.uniform(0.28, 0.36)),
        rib_phase=rng.uniform(0.0, 30.0),
    ).layout()
    an.vessels = _vessels(rng, an)
    an.bowel = _bowel_loops(rng, an)
    return an


def _vessels(rng: np.random.Generator, an: A.Anatomy) -> tuple:
    """Portal branches from the hilum and hepatic veins toward the IVC, as 3D segments."""
    lx, ly = an.liver_centre()
    _, _, ax, ay = an.cavity
    lo, hi = (v * an.coverage for v in an.liver_range)
    hilum = np.array([lx - 0.25 * ax, ly - 0.05 * ay, lo + 0.45 * (hi - lo)])
    ivc = np.array([26.0, an.spine_y + 26.0, lo + 0.85 * (hi - lo)])
    out = []
    for i in range(9):
        root = hilum if i < 6 else ivc
        tip = np.array(
            [
                lx + rng.uniform(-0.45, 0.5) * ax,
                ly + rng.uniform(-0.5, 0.55) * ay,
                root[2] + rng.uniform(-0.35, 0.3) * (hi - lo),
            ]
        )
        out.append((root + rng.normal(0, 4, 3), tip, rng.uniform(3.0, 6.0)))
    return tuple(out)


def _bowel_loops(rng: np.random.Generator, an: A.Anatomy, count: int = 40) -> tuple:
    """Meandering tubes (random walks kept inside the cavity) in the lower abdomen."""
    _, cy, ax, ay = an.cavity
    top = (an.liver_range[0] + 0.45 * (an.liver_range[1] - an.liver_range[0])) * an.coverage
    loops = []
    for _ in range(count):
        r, phi = np.sqrt(rng.uniform(0, 0.7)), rng.uniform(0, 2 * np.pi)
        p = np.array([r * ax * np.cos(phi), cy + r * ay * np.sin(phi), rng.uniform(-20, top)])
        heading, points = rng.uniform(0, 2 * np.pi), [p]
        for _ in range(7):
            heading += rng.uniform(-1.2, 1.2)
            step = np.array([np.cos(heading), np.sin(heading), rng.uniform(-0.9, 0.9)]) * 32.0
            q = points[-1] + step
            if (q[0] / ax) ** 2 + ((q[1] - cy) / ay) ** 2 > 0.72:  # turn back toward the centre
                heading += np.pi
                q = points[-1] - step * np.array([1, 1, -1])
            points.append(q)
        content = -900.0 if rng.random() < 0.3 else rng.uniform(5.0, 30.0)
        loops.append((np.array(points), rng.uniform(10.0, 16.0), content))
    return tuple(loops)


def _place_tumours(rng: np.random.Generator, an: A.Anatomy, grid: Grid, n: int) -> tuple:
    """Put each lesion's centre well inside the liver cross-section at a random height."""
    lo, hi = an.liver_range
    found: list[A.Tumour] = []
    for _ in range(n * 20):
        if len(found) == n:
            break
        z = rng.uniform(lo + 0.25 * (hi - lo), lo + 0.8 * (hi - lo)) * an.coverage
        canvas = _blank(grid)
        A.liver(canvas, an, z / an.coverage, z, A.body_wall(canvas, an))
        depth = ndimage.distance_transform_edt(canvas.labels == 1) * float(grid.xs[1] - grid.xs[0])
        r = rng.uniform(7.0, 24.0)
        inside = np.argwhere(depth > r + 4.0)
        if len(inside) == 0:
            continue
        i, j = inside[rng.integers(len(inside))]
        radii = (r * rng.uniform(0.85, 1.15), r * rng.uniform(0.85, 1.15), r * rng.uniform(0.8, 1))
        hu = rng.uniform(20.0, 35.0)
        found.append(A.Tumour((float(grid.xs[i]), float(grid.ys[j]), z), radii, hu))
    return tuple(found)


def _blank(grid: Grid) -> Canvas:
    shape = (len(grid.xs), len(grid.ys))
    return Canvas(grid, np.full(shape, A.AIR, np.float32), np.zeros(shape, np.uint8))


def _slice(an: A.Anatomy, grid: Grid, z: float, seed: int, k: int) -> tuple:
    """Paint one axial slice back to front, then add correlated noise; (int16 HU, labels)."""
    c = _blank(grid)
    f = z / an.coverage
    cavity = A.body_wall(c, an)
    A.bowel(c, an, cavity, z)
    A.colon(c, an, f)
    A.psoas(c, an, f)
    A.lungs(c, an, cavity, z)  # organs below the domes are painted over the lung bases
    A.spleen_and_stomach(c, an, f)
    A.liver(c, an, f, z, cavity)
    A.tumours(c, an, z)
    A.gallbladder(c, an, f)
    A.kidneys(c, an, z)
    A.great_vessels(c, an)
    spine(c, an, z)
    ribs(c, an, z)
    noise = np.random.default_rng([seed, k]).standard_normal(c.hu.shape, np.float32)
    noise = ndimage.gaussian_filter(noise, 0.7)
    c.hu += noise * (NOISE_HU / max(float(noise.std()), 1e-6))
    hu = np.clip(np.rint(c.hu), -1024, 3071).astype(np.int16)
    return hu, _without_specks(c.labels, float(grid.xs[1] - grid.xs[0]) ** 2)


def _without_specks(labels: np.ndarray, pixel_mm2: float, min_mm2: float = 10.0) -> np.ndarray:
    """Drop label islands smaller than a few mm² (slivers left where edges of organs meet)."""
    islands, n = ndimage.label(labels > 0)
    if n > 1:
        sizes = ndimage.sum_labels(np.ones(labels.shape), islands, np.arange(1, n + 1))
        small = np.flatnonzero(sizes * pixel_mm2 < min_mm2) + 1
        labels[np.isin(islands, small)] = 0
    return labels


def lps_storage(array: np.ndarray, affine: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The same image with x and y voxel order reversed (axis codes L, P, S)."""
    flip = np.diag([-1.0, -1.0, 1.0, 1.0])
    flip[0, 3], flip[1, 3] = array.shape[0] - 1, array.shape[1] - 1
    return array[::-1, ::-1, :], affine @ flip


def write_phantom(phantom: Phantom, volume_path: Path, mask_path: Path | None = None) -> None:
    """Write the volume (and labels) as NIfTI with matching qform/sform in LPS voxel order."""
    pairs = [(phantom.hu, volume_path)] + ([(phantom.labels, mask_path)] if mask_path else [])
    for array, path in pairs:
        data, affine = lps_storage(array, phantom.affine)
        img = nib.Nifti1Image(np.ascontiguousarray(data), affine)
        img.header.set_xyzt_units("mm", "sec")
        img.set_qform(affine, code=1)
        img.set_sform(affine, code=1)
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        nib.save(img, str(path))
