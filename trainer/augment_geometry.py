"""Geometry of the ADA pipeline: per-sample affine matrices and their alias-free application.

The paper's appendix (Karras et al. 2020, "Training GANs with Limited Data", augmentation
pipeline) applies all geometric transforms as one affine warp on a 2x oversampled image: pad by
reflection, upsample 2x with the 12-tap Symlet-6 wavelet low-pass, sample once, low-pass and
downsample. Sampling at the image's own rate instead folds the frequencies a rotation or a
fractional shift moves past Nyquist back into the image (aliasing), and the generator learns it.

Coordinates are pixels with the origin at the image centre; a matrix `[N, 3, 3]` maps output
coordinates to input coordinates. Everything stays on the device: no host syncs.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

# Symlet-6 decomposition low-pass (orthonormal: sum sqrt(2), unit energy, orthogonal to its own
# even shifts), so that downsampling with it undoes upsampling with it exactly.
SYM6 = (
    0.015404109327027373,
    0.0034907120842174702,
    -0.11799011114819057,
    -0.048311742585633,
    0.4910559419267466,
    0.787641141030194,
    0.3379294217276218,
    -0.07263752278646252,
    -0.021060292512300564,
    0.04472490177066578,
    0.0017677118642428036,
    -0.007800708325034148,
)


def sym6_filter() -> Tensor:
    """The Symlet-6 low-pass normalised to unit DC gain, `[12]`."""
    f = torch.tensor(SYM6, dtype=torch.float64)
    return (f / f.sum()).float()


def matrix(*rows: list, n: int, like: Tensor) -> Tensor:
    """Stack entries (tensors `[N]` or Python numbers) into matrices `[N, R, C]` on `like`'s
    device; numbers become fills, never host-to-device copies."""
    entries = [
        e if isinstance(e, Tensor) else torch.full([n], float(e), device=like.device)
        for row in rows
        for e in row
    ]
    return torch.stack([e.to(like.dtype) for e in entries], dim=1).reshape(n, len(rows), -1)


def translate2d(tx: Tensor, ty: Tensor) -> Tensor:
    return matrix([1, 0, tx], [0, 1, ty], [0, 0, 1], n=len(tx), like=tx)


def scale2d(sx: Tensor, sy: Tensor) -> Tensor:
    return matrix([sx, 0, 0], [0, sy, 0], [0, 0, 1], n=len(sx), like=sx)


def rotate2d(theta: Tensor) -> Tensor:
    c, s = torch.cos(theta), torch.sin(theta)
    return matrix([c, -s, 0], [s, c, 0], [0, 0, 1], n=len(theta), like=theta)


def _up_axis(x: Tensor, f: Tensor, dim: int) -> Tensor:
    """2x upsampling along dim 2 (rows) or 3 (columns) of `[B, 1, H, W]`: zero insertion and
    true convolution with `2 f`, aligned as `ops.upsample2d` (pixel-centred)."""
    k = f.numel()
    shape, stride = ([1, 1, k, 1], (2, 1)) if dim == 2 else ([1, 1, 1, k], (1, 2))
    y = F.conv_transpose2d(x, (f * 2).to(x.dtype).view(shape), stride=stride)
    start, length = k - 1 - (k + 1) // 2, x.shape[dim] * 2  # skip what padding (k+1)//2 skips
    return y.narrow(dim, start, length)


def _down_axis(x: Tensor, f: Tensor, dim: int) -> Tensor:
    """2x downsampling along one axis by correlation with `f` (the matched filter of
    `_up_axis`, so that down(up(x)) == x for an orthonormal wavelet)."""
    k = f.numel()
    shape, stride = ([1, 1, k, 1], (2, 1)) if dim == 2 else ([1, 1, 1, k], (1, 2))
    pad = [0, 0, (k - 2) // 2, (k - 1) // 2] if dim == 2 else [(k - 2) // 2, (k - 1) // 2]
    return F.conv2d(F.pad(x, pad), f.to(x.dtype).view(shape), stride=stride)


def upsample2x(x: Tensor, f: Tensor) -> Tensor:
    n, c, h, w = x.shape
    y = _up_axis(_up_axis(x.reshape(n * c, 1, h, w), f, 3), f, 2)
    return y.reshape(n, c, 2 * h, 2 * w)


def downsample2x(x: Tensor, f: Tensor) -> Tensor:
    n, c, h, w = x.shape
    y = _down_axis(_down_axis(x.reshape(n * c, 1, h, w), f, 3), f, 2)
    return y.reshape(n, c, h // 2, w // 2)


def filter_delay(f: Tensor) -> float:
    """How far (in input pixels) 2x upsampling with the asymmetric `f` moves the image from
    pixel-centred: half its DC group delay minus the centre tap position."""
    taps = torch.arange(f.numel(), dtype=torch.float64)
    return float(((taps * f.double()).sum() / f.double().sum() - (f.numel() - 1) / 2) / 2)


def warp(x: Tensor, m: Tensor, f: Tensor, delay: float | None = None) -> Tensor:
    """Apply matrices `m` `[N, 3, 3]` (output -> input pixels, centred) to `x` `[N, C, H, W]`
    without aliasing: reflect-pad, 2x up with `f`, one bilinear sampling, 2x down with `f`.

    The padding is fixed at the largest the reference ever uses (H-1, W-1), so its size needs
    no look at the matrices (a host sync); samples beyond it read zeros, as in the reference."""
    n, c, h, w = x.shape
    ph, pw, q = h - 1, w - 1, f.numel() // 4  # q: output margin the down-filter needs
    # The up-filter shifts the image by d and the down-filter shifts it back; conjugating m by
    # that shift keeps rotations centred (else a 90-degree turn is off by 2d = 0.2 pixels).
    delay = filter_delay(f.cpu()) if delay is None else delay  # pass it: f may be on a GPU
    d = torch.full([n], delay, device=m.device, dtype=m.dtype)
    m = translate2d(d, d) @ m @ translate2d(-d, -d)
    up = upsample2x(F.pad(x, [pw, pw, ph, ph], mode="reflect"), f)
    # grid_sample's [-1, 1] coordinates: output g -> pixels g * (W + 2q) / 2 (of the margin-
    # extended output); input pixels u -> u * 2 / (W + 2 pw) of the padded image.
    rows = torch.stack([m[:, 0] * (2 / (w + 2 * pw)), m[:, 1] * (2 / (h + 2 * ph))], dim=1)
    theta = torch.cat(  # scalar factors only: no host-to-device copy
        [rows[:, :, 0:1] * ((w + 2 * q) / 2), rows[:, :, 1:2] * ((h + 2 * q) / 2), rows[:, :, 2:]],
        dim=2,
    )
    size = [n, c, 2 * (h + 2 * q), 2 * (w + 2 * q)]
    grid = F.affine_grid(theta.to(x.dtype), size, align_corners=False)
    y = F.grid_sample(up, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return downsample2x(y, f)[:, :, q : q + h, q : q + w]


SYM6_DELAY = filter_delay(sym6_filter())


def quarter_turns(k: Tensor) -> Tensor:
    """Exact rotation matrices by k * 90 degrees (k an integer-valued float tensor `[N]`)."""
    angle = k * (math.pi / 2)
    c, s = torch.cos(angle).round(), torch.sin(angle).round()
    return matrix([c, -s, 0], [s, c, 0], [0, 0, 1], n=len(k), like=k)
