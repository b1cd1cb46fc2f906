"""ADA augmentation pipeline (Karras et al. 2020, "Training GANs with Limited Data").

Every image the discriminator sees goes through `AugmentPipe`; each transform is applied to each
sample independently with probability `p * multiplier`, so `p` (tuned by ADA) sets the strength.
Geometric transforms are composed into one 3x3 matrix per sample and applied with a single
bicubic resampling with reflection at the borders. Randomness comes from the global torch RNG
on the images' device, so a given RNG state reproduces the same augmentation.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from trainer.layers import constructor_args

# Share of image power expected in each band of the filter bank, lowest band first.
BAND_EXPECTED_POWER = (10 / 13, 1 / 13, 1 / 13, 1 / 13)


def _matrix(*rows: list[Tensor | float], like: Tensor) -> Tensor:
    """Stack per-sample entries (tensors `[N]` or scalars) into matrices `[N, 3, 3]`."""
    entries = [
        torch.as_tensor(e, dtype=like.dtype, device=like.device) for row in rows for e in row
    ]
    entries = [e.expand(like.shape[0]) for e in entries]
    return torch.stack(entries, dim=1).reshape(-1, len(rows), len(rows[0]))


def translate2d(tx: Tensor, ty: Tensor) -> Tensor:
    return _matrix([1, 0, tx], [0, 1, ty], [0, 0, 1], like=tx)


def scale2d(sx: Tensor, sy: Tensor) -> Tensor:
    return _matrix([sx, 0, 0], [0, sy, 0], [0, 0, 1], like=sx)


def rotate2d(theta: Tensor) -> Tensor:
    c, s = torch.cos(theta), torch.sin(theta)
    return _matrix([c, -s, 0], [s, c, 0], [0, 0, 1], like=theta)


def band_filters(size: int = 15) -> Tensor:
    """Four 2D filters `[4, size, size]` splitting an image into octave bands (they sum to a unit
    impulse): undecimated binomial lowpasses L1 > L2 > L3, bands L3, L2-L3, L1-L2, 1-L1."""
    lowpasses, lp = [], torch.ones(1, dtype=torch.float64)
    for level in range(3):  # a-trous: [1, 2, 1] / 4 with 2^level - 1 zeros between taps
        taps = torch.zeros(2 ** (level + 1) + 1, dtype=torch.float64)
        taps[:: 2**level] = torch.tensor([0.25, 0.5, 0.25], dtype=torch.float64)
        lp = torch.nn.functional.conv1d(
            lp.view(1, 1, -1), taps.view(1, 1, -1), padding=len(taps) - 1
        ).flatten()
        pad = (size - len(lp)) // 2
        lowpasses.append(F.pad(torch.outer(lp, lp), [pad] * 4))
    impulse = torch.zeros(size, size, dtype=torch.float64)
    impulse[size // 2, size // 2] = 1
    l1, l2, l3 = lowpasses
    return torch.stack([l3, l2 - l3, l1 - l2, impulse - l1]).float()


class AugmentPipe(torch.nn.Module):
    """Differentiable, non-leaking augmentations for D's inputs; strength set by buffer `p`."""

    def __init__(
        self,
        xflip=1,
        rotate90=1,
        xint=1,
        xint_max=0.125,
        scale=1,
        rotate=1,
        aniso=1,
        xfrac=1,
        scale_std=0.2,
        rotate_max=1.0,
        aniso_std=0.2,
        xfrac_std=0.125,
        brightness=1,
        contrast=1,
        brightness_std=0.2,
        contrast_std=0.5,
        imgfilter=1,
        imgfilter_std=1.0,
        noise=1,
        noise_std=0.1,
        cutout=1,
        cutout_size=0.5,
    ):
        init_kwargs = constructor_args(locals())
        super().__init__()
        self.init_kwargs = init_kwargs
        for name, value in init_kwargs.items():  # multipliers and strengths as plain floats
            setattr(self, name, float(value))
        self.register_buffer("p", torch.zeros([]))
        self.register_buffer("band_filters", band_filters())  # [4, K, K]

    def forward(self, images: Tensor) -> Tensor:  # [N, C, H, W] -> [N, C, H, W]
        if float(self.p) == 0:
            return images
        x = self._geometric(images)
        x = self._brightness_contrast(x)
        x = self._filter(x)
        x = self._noise(x)
        return self._cutout(x)

    def _chance(self, n: int, multiplier: float, device: torch.device) -> Tensor:
        """Per-sample decision `[N]` to apply a transform: True with probability p * multiplier."""
        return self._chance_p(n, self.p * multiplier, device)

    @staticmethod
    def _chance_p(n: int, probability: Tensor, device: torch.device) -> Tensor:
        return torch.rand([n], device=device) < probability

    def _geometric_matrix(self, n: int, h: int, w: int, device) -> tuple[Tensor, Tensor]:
        """Random matrices `[N, 3, 3]` mapping output to input pixel coordinates (origin at the
        image centre), and which samples `[N]` got any transform. All the distributions are
        symmetric, so sampling the inverse transform directly is the same as inverting."""
        zeros, ones = torch.zeros([n], device=device), torch.ones([n], device=device)
        m, active = torch.eye(3, device=device).repeat(n, 1, 1), torch.zeros_like(ones).bool()

        def maybe(probability: Tensor, value: Tensor, identity: Tensor) -> Tensor:
            nonlocal active
            chosen = self._chance_p(n, probability, device)
            active = active | chosen
            return torch.where(chosen, value, identity)

        def uniform(half_width: float, *shape: int) -> Tensor:  # U(-half_width, half_width)
            return (torch.rand([*shape, n], device=device) * 2 - 1) * half_width

        def log2_normal(std: float) -> Tensor:  # 2^N(0, std)
            return torch.exp2(torch.randn([n], device=device) * std)

        p, p_rot = self.p, 1 - (1 - self.p * self.rotate).clamp(min=0).sqrt()  # two rotations
        if self.xflip:  # mirror with probability 1/2 when selected
            flip = maybe(p * self.xflip, torch.randint(0, 2, [n], device=device).float(), zeros)
            m = m @ scale2d(1 - 2 * flip, ones)
        if self.rotate90:  # exact multiples of 90 degrees
            quarter = torch.randint(0, 4, [n], device=device).float() * (math.pi / 2)
            quarter = maybe(p * self.rotate90, quarter, zeros)
            c, s = torch.cos(quarter).round(), torch.sin(quarter).round()
            m = m @ _matrix([c, -s, 0], [s, c, 0], [0, 0, 1], like=c)
        if self.xint:  # whole-pixel translation of up to xint_max of the image size
            t = maybe(p * self.xint, uniform(self.xint_max, 2), zeros.expand(2, n))
            m = m @ translate2d((t[0] * w).round(), (t[1] * h).round())
        if self.scale:  # isotropic
            s = maybe(p * self.scale, log2_normal(self.scale_std), ones)
            m = m @ scale2d(s, s)
        if self.rotate:  # arbitrary rotation before the anisotropic scaling ...
            m = m @ rotate2d(maybe(p_rot, uniform(math.pi * self.rotate_max), zeros))
        if self.aniso:  # stretch one axis, squeeze the other
            s = maybe(p * self.aniso, log2_normal(self.aniso_std), ones)
            m = m @ scale2d(s, 1 / s)
        if self.rotate:  # ... and after it; either happens with probability p * rotate
            m = m @ rotate2d(maybe(p_rot, uniform(math.pi * self.rotate_max), zeros))
        if self.xfrac:  # sub-pixel translation, normal with std xfrac_std of the image size
            t = maybe(p * self.xfrac, torch.randn([2, n], device=device) * self.xfrac_std, zeros)
            m = m @ translate2d(t[0] * w, t[1] * h)
        return m, active

    def _geometric(self, x: Tensor) -> Tensor:
        n, c, h, w = x.shape
        m, active = self._geometric_matrix(n, h, w, x.device)
        if not active.any():
            return x
        to_pixels = torch.diag(torch.tensor([w / 2, h / 2, 1.0], device=x.device))
        theta = torch.linalg.inv(to_pixels) @ m @ to_pixels  # in grid_sample's [-1, 1] coords
        grid = F.affine_grid(theta[:, :2, :].to(x.dtype), [n, c, h, w], align_corners=False)
        out = F.grid_sample(x, grid, mode="bicubic", padding_mode="reflection", align_corners=False)
        return torch.where(active[:, None, None, None], out, x)  # untouched samples stay exact

    def _brightness_contrast(self, x: Tensor) -> Tensor:
        n, device = x.shape[0], x.device
        b_on = self._chance(n, self.brightness, device)
        c_on = self._chance(n, self.contrast, device)
        if not (b_on | c_on).any():
            return x
        b = torch.where(b_on, torch.randn([n], device=device) * self.brightness_std, 0.0)
        c = torch.where(c_on, torch.exp2(torch.randn([n], device=device) * self.contrast_std), 1)
        out = (x + b.to(x.dtype).view(-1, 1, 1, 1)) * c.to(x.dtype).view(-1, 1, 1, 1)
        return torch.where((b_on | c_on)[:, None, None, None], out, x)

    def _filter(self, x: Tensor) -> Tensor:
        """Random per-band gains (log-normal), renormalised to keep the expected image power."""
        if not self.imgfilter:
            return x
        n, c, h, w = x.shape
        expected_power = torch.tensor(BAND_EXPECTED_POWER, device=x.device)
        gains = torch.ones([n, 4], device=x.device)
        active = torch.zeros([n], dtype=torch.bool, device=x.device)
        for band in range(4):
            on = self._chance(n, self.imgfilter, x.device)
            t = torch.ones([n, 4], device=x.device)
            t[:, band] = torch.exp2(torch.randn([n], device=x.device) * self.imgfilter_std)
            t = torch.where(on[:, None], t, 1.0)
            gains = gains * t / (expected_power * t.square()).sum(dim=1, keepdim=True).sqrt()
            active = active | on
        if not active.any():
            return x
        kernels = torch.einsum("nb,bij->nij", gains, self.band_filters)  # [N, K, K]
        k = kernels.shape[-1]
        weight = kernels.repeat_interleave(c, dim=0).unsqueeze(1).to(x.dtype)  # [N*C, 1, K, K]
        padded = F.pad(x.reshape(1, n * c, h, w), [k // 2] * 4, mode="reflect")
        out = F.conv2d(padded, weight, groups=n * c).reshape(n, c, h, w)
        return torch.where(active[:, None, None, None], out, x)

    def _noise(self, x: Tensor) -> Tensor:
        """Additive Gaussian noise whose std is itself |N(0, noise_std)| per sample."""
        if not self.noise:
            return x
        on = self._chance(x.shape[0], self.noise, x.device)
        if not on.any():
            return x
        sigma = torch.randn([len(on)], device=x.device).abs() * self.noise_std
        out = x + torch.randn_like(x) * sigma.to(x.dtype).view(-1, 1, 1, 1)
        return torch.where(on[:, None, None, None], out, x)

    def _cutout(self, x: Tensor) -> Tensor:
        """Zero a square (side cutout_size of the image) around a uniformly random centre."""
        if not self.cutout:
            return x
        n, _, h, w = x.shape
        on = self._chance(n, self.cutout, x.device)
        if not on.any():
            return x
        centre = torch.rand([n, 2, 1, 1], device=x.device)  # (cx, cy) in [0, 1)
        ys = ((torch.arange(h, device=x.device) + 0.5) / h).view(1, h, 1)
        xs = ((torch.arange(w, device=x.device) + 0.5) / w).view(1, 1, w)
        inside = ((xs - centre[:, 0]).abs() < self.cutout_size / 2) & (
            (ys - centre[:, 1]).abs() < self.cutout_size / 2
        )  # [N, H, W]
        keep = ~(inside & on[:, None, None])
        return x * keep.unsqueeze(1).to(x.dtype)
