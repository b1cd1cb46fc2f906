"""ADA augmentation pipeline (Karras et al. 2020, "Training GANs with Limited Data").

Every image the discriminator sees goes through `AugmentPipe`; each transform is applied to each
sample independently with probability `p * multiplier`, so `p` (tuned by ADA) sets the strength.
The paper's named pipes (`AUGPIPES`) choose the groups; the default is its recommendation, bgc.

- blit (x-flip, quarter turns, integer shifts) permutes pixels: done exactly by one gather.
- geom (scale, rotation, anisotropy, fractional shift) is composed into one matrix per sample
  and applied once without aliasing (`augment_geometry.warp`).
- color (brightness, contrast, luma flip, hue, saturation) is a 4x4 colour matrix per sample;
  with one channel only brightness, contrast and the luma flip act (the flip is x -> -x, an
  inversion about mid-grey 0, as the reference's reflection through the luma axis).
- filter, noise, cutout as in the paper.

Channels past `image_channels` (e.g. paired masks) take blit, geom and filter with the image but
no colour, noise or cutout. Randomness comes from the global torch RNG on the images' device, so
a given RNG state reproduces the same augmentation. No host syncs: unselected samples get the
identity parameters or are put back with `torch.where`, never skipped by a Python branch.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from trainer import augment_geometry as geo
from trainer.augment_names import AUGPIPES, DEFAULT_AUGPIPE, MULTIPLIERS, augpipe_kwargs
from trainer.layers import constructor_args

__all__ = ["AUGPIPES", "DEFAULT_AUGPIPE", "MULTIPLIERS", "AugmentPipe", "augpipe_kwargs"]

# Share of image power expected in each band of the filter bank, lowest band first.
BAND_EXPECTED_POWER = (10 / 13, 1 / 13, 1 / 13, 1 / 13)


def band_filters(size: int = 15) -> Tensor:
    """Four 2D filters `[4, size, size]` splitting an image into octave bands (they sum to a unit
    impulse): undecimated binomial lowpasses L1 > L2 > L3, bands L3, L2-L3, L1-L2, 1-L1."""
    lowpasses, lp = [], torch.ones(1, dtype=torch.float64)
    for level in range(3):  # a-trous: [1, 2, 1] / 4 with 2^level - 1 zeros between taps
        taps = torch.zeros(2 ** (level + 1) + 1, dtype=torch.float64)
        taps[:: 2**level] = torch.tensor([0.25, 0.5, 0.25], dtype=torch.float64)
        lp = F.conv1d(lp.view(1, 1, -1), taps.view(1, 1, -1), padding=len(taps) - 1).flatten()
        pad = (size - len(lp)) // 2
        lowpasses.append(F.pad(torch.outer(lp, lp), [pad] * 4))
    impulse = torch.zeros(size, size, dtype=torch.float64)
    impulse[size // 2, size // 2] = 1
    l1, l2, l3 = lowpasses
    return torch.stack([l3, l2 - l3, l1 - l2, impulse - l1]).float()


def _reflect(i: Tensor, size: int) -> Tensor:
    """Indices folded into [0, size) by reflection without repeating the edge pixel."""
    if size == 1:
        return torch.zeros_like(i)
    i = torch.remainder(i, 2 * size - 2)
    return torch.where(i > size - 1, 2 * size - 2 - i, i)


class AugmentPipe(torch.nn.Module):
    """Differentiable, non-leaking augmentations for D's inputs; strength set by buffer `p`.
    The multipliers default to the paper's bgc pipe (`augpipe_kwargs` gives the others)."""

    def __init__(
        self,
        xflip=1,
        rotate90=1,
        xint=1,
        scale=1,
        rotate=1,
        aniso=1,
        xfrac=1,
        brightness=1,
        contrast=1,
        lumaflip=1,
        hue=1,
        saturation=1,
        imgfilter=0,
        noise=0,
        cutout=0,
        xint_max=0.125,
        scale_std=0.2,
        rotate_max=1.0,
        aniso_std=0.2,
        xfrac_std=0.125,
        brightness_std=0.2,
        contrast_std=0.5,
        hue_max=1.0,
        saturation_std=1.0,
        imgfilter_std=1.0,
        noise_std=0.1,
        cutout_size=0.5,
        image_channels=None,
    ):
        init_kwargs = constructor_args(locals())
        super().__init__()
        self.init_kwargs = init_kwargs
        for name, value in init_kwargs.items():  # multipliers and strengths as plain floats
            setattr(self, name, None if value is None else float(value))
        self.image_channels = None if image_channels is None else int(image_channels)
        self.register_buffer("p", torch.zeros([]))
        self.register_buffer("band_filters", band_filters())  # [4, K, K]
        self.register_buffer("geom_filter", geo.sym6_filter())  # [12]
        # Constants live on the device as buffers: building them per call would copy host data.
        self.register_buffer("band_power", torch.tensor(BAND_EXPECTED_POWER), persistent=False)
        luma = torch.tensor([1.0, 1, 1, 0]) / math.sqrt(3)
        self.register_buffer("luma_axis", luma, persistent=False)
        cross = torch.tensor([[0.0, -1, 1, 0], [1, 0, -1, 0], [-1, 1, 0, 0], [0, 0, 0, 0]])
        self.register_buffer("luma_cross", cross / math.sqrt(3), persistent=False)  # [v]x

    def forward(self, images: Tensor) -> Tensor:  # [N, C, H, W] -> [N, C, H, W]
        x = self._blit(images)
        x = self._geometric(x)
        ic = x.shape[1] if self.image_channels is None else self.image_channels
        img, rest = x[:, :ic], x[:, ic:]
        img = self._color(img)
        x = torch.cat([img, rest], dim=1) if rest.shape[1] else img
        x = self._filter(x)
        img, rest = x[:, :ic], x[:, ic:]
        img = self._cutout(self._noise(img))
        return torch.cat([img, rest], dim=1) if rest.shape[1] else img

    def _chance(self, n: int, multiplier: float, device: torch.device) -> Tensor:
        """Per-sample decision `[N]` to apply a transform: True with probability p * multiplier."""
        return torch.rand([n], device=device) < self.p * multiplier

    def _blit(self, x: Tensor) -> Tensor:
        """x-flip, quarter turns and whole-pixel shifts (reflected at the border) as one exact
        gather; needs square images for the quarter turns."""
        if not (self.xflip or self.rotate90 or self.xint):
            return x
        n, c, h, w = x.shape
        dev = x.device
        zeros, ones = torch.zeros([n], device=dev), torch.ones([n], device=dev)
        m = torch.eye(3, device=dev).repeat(n, 1, 1)
        if self.xflip:  # mirror with probability 1/2 when selected
            flip = torch.randint(0, 2, [n], device=dev).float()
            flip = torch.where(self._chance(n, self.xflip, dev), flip, zeros)
            m = m @ geo.scale2d(1 - 2 * flip, ones)
        if self.rotate90:
            k = torch.randint(0, 4, [n], device=dev).float()
            m = m @ geo.quarter_turns(torch.where(self._chance(n, self.rotate90, dev), k, zeros))
        if self.xint:  # up to xint_max of the image size
            t = (torch.rand([2, n], device=dev) * 2 - 1) * self.xint_max
            t = torch.where(self._chance(n, self.xint, dev), t, 0.0)
            m = m @ geo.translate2d((t[0] * w).round(), (t[1] * h).round())
        ys = torch.arange(h, device=dev, dtype=torch.float32) - (h - 1) / 2
        xs = torch.arange(w, device=dev, dtype=torch.float32) - (w - 1) / 2
        ox, oy = xs.view(1, 1, w), ys.view(1, h, 1)
        sx = m[:, 0, 0, None, None] * ox + m[:, 0, 1, None, None] * oy + m[:, 0, 2, None, None]
        sy = m[:, 1, 0, None, None] * ox + m[:, 1, 1, None, None] * oy + m[:, 1, 2, None, None]
        ix = _reflect((sx + (w - 1) / 2).round().long(), w)
        iy = _reflect((sy + (h - 1) / 2).round().long(), h)
        index = (iy * w + ix).view(n, 1, h * w).expand(n, c, h * w)
        return x.reshape(n, c, h * w).gather(2, index).reshape(n, c, h, w)

    def _geometric_matrix(self, n: int, h: int, w: int, device) -> tuple[Tensor, Tensor]:
        """Random matrices `[N, 3, 3]` mapping output to input pixel coordinates (origin at the
        image centre), and which samples `[N]` got any transform. All the distributions are
        symmetric, so sampling the inverse transform directly is the same as inverting."""
        zeros, ones = torch.zeros([n], device=device), torch.ones([n], device=device)
        m, active = torch.eye(3, device=device).repeat(n, 1, 1), torch.zeros_like(ones).bool()

        def maybe(probability: Tensor, value: Tensor, identity: Tensor) -> Tensor:
            nonlocal active
            chosen = torch.rand([n], device=device) < probability
            active = active | chosen
            return torch.where(chosen, value, identity)

        def uniform(half_width: float) -> Tensor:  # U(-half_width, half_width)
            return (torch.rand([n], device=device) * 2 - 1) * half_width

        def log2_normal(std: float) -> Tensor:  # 2^N(0, std)
            return torch.exp2(torch.randn([n], device=device) * std)

        p, p_rot = self.p, 1 - (1 - self.p * self.rotate).clamp(min=0).sqrt()  # two rotations
        if self.scale:  # isotropic
            s = maybe(p * self.scale, log2_normal(self.scale_std), ones)
            m = m @ geo.scale2d(s, s)
        if self.rotate:  # arbitrary rotation before the anisotropic scaling ...
            m = m @ geo.rotate2d(maybe(p_rot, uniform(math.pi * self.rotate_max), zeros))
        if self.aniso:  # stretch one axis, squeeze the other
            s = maybe(p * self.aniso, log2_normal(self.aniso_std), ones)
            m = m @ geo.scale2d(s, 1 / s)
        if self.rotate:  # ... and after it; either happens with probability p * rotate
            m = m @ geo.rotate2d(maybe(p_rot, uniform(math.pi * self.rotate_max), zeros))
        if self.xfrac:  # sub-pixel translation, normal with std xfrac_std of the image size
            t = torch.randn([2, n], device=device) * self.xfrac_std
            t = maybe(p * self.xfrac, t, zeros.expand(2, n))
            m = m @ geo.translate2d(t[0] * w, t[1] * h)
        return m, active

    def _geometric(self, x: Tensor) -> Tensor:
        if not (self.scale or self.rotate or self.aniso or self.xfrac):
            return x
        n, c, h, w = x.shape
        m, active = self._geometric_matrix(n, h, w, x.device)
        out = geo.warp(x, m, self.geom_filter, geo.SYM6_DELAY)
        return torch.where(active[:, None, None, None], out, x)  # untouched samples stay exact

    def _color_matrix(self, n: int, rgb: bool, device) -> Tensor:
        """Per-sample colour matrices `[N, 4, 4]` acting on (r, g, b, 1)."""
        eye = torch.eye(4, device=device)  # a fill kernel, no copy
        C, zeros = eye.repeat(n, 1, 1), torch.zeros([n], device=device)
        vv = torch.outer(self.luma_axis, self.luma_axis)
        if self.brightness:
            b = torch.randn([n], device=device) * self.brightness_std
            b = torch.where(self._chance(n, self.brightness, device), b, zeros)
            C = geo.matrix([1, 0, 0, b], [0, 1, 0, b], [0, 0, 1, b], [0, 0, 0, 1], n=n, like=C) @ C
        if self.contrast:
            s = torch.exp2(torch.randn([n], device=device) * self.contrast_std)
            s = torch.where(self._chance(n, self.contrast, device), s, zeros + 1)
            C = geo.matrix([s, 0, 0, 0], [0, s, 0, 0], [0, 0, s, 0], [0, 0, 0, 1], n=n, like=C) @ C
        if self.lumaflip:
            i = torch.randint(0, 2, [n], device=device).float()
            i = torch.where(self._chance(n, self.lumaflip, device), i, zeros)
            C = (eye - 2 * vv * i[:, None, None]) @ C
        if self.hue and rgb:  # rotation about the luma axis (Rodrigues)
            t = (torch.rand([n], device=device) * 2 - 1) * math.pi * self.hue_max
            t = torch.where(self._chance(n, self.hue, device), t, zeros)
            cos, sin = t.cos()[:, None, None], t.sin()[:, None, None]
            rot = cos * (eye - vv) + sin * self.luma_cross + vv
            rot[:, 3, 3] = 1
            C = rot @ C
        if self.saturation and rgb:
            s = torch.exp2(torch.randn([n], device=device) * self.saturation_std)
            s = torch.where(self._chance(n, self.saturation, device), s, zeros + 1)
            C = (vv + (eye - vv) * s[:, None, None]) @ C
        return C

    def _color(self, x: Tensor) -> Tensor:
        """RGB images take the whole matrix; other channel counts its action on gray levels."""
        if not any((self.brightness, self.contrast, self.lumaflip, self.hue, self.saturation)):
            return x
        n, c, h, w = x.shape
        rgb = c == 3
        C = self._color_matrix(n, rgb, x.device).to(x.dtype)
        if rgb:
            out = C[:, :3, :3] @ x.reshape(n, 3, h * w) + C[:, :3, 3:]
            return out.reshape(n, c, h, w)
        gray = C[:, :3, :].mean(dim=1)  # [N, 4]: response of (x, x, x, 1)
        gain, offset = gray[:, :3].sum(dim=1), gray[:, 3]
        return x * gain.view(-1, 1, 1, 1) + offset.view(-1, 1, 1, 1)

    def _filter(self, x: Tensor) -> Tensor:
        """Random per-band gains (log-normal), renormalised to keep the expected image power."""
        if not self.imgfilter:
            return x
        n, c, h, w = x.shape
        expected_power = self.band_power
        gains = torch.ones([n, 4], device=x.device)
        active = torch.zeros([n], dtype=torch.bool, device=x.device)
        for band in range(4):
            on = self._chance(n, self.imgfilter, x.device)
            t = torch.ones([n, 4], device=x.device)
            t[:, band] = torch.exp2(torch.randn([n], device=x.device) * self.imgfilter_std)
            t = torch.where(on[:, None], t, 1.0)
            gains = gains * t / (expected_power * t.square()).sum(dim=1, keepdim=True).sqrt()
            active = active | on
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
        sigma = torch.randn([len(on)], device=x.device).abs() * self.noise_std
        sigma = torch.where(on, sigma, 0.0)
        return x + torch.randn_like(x) * sigma.to(x.dtype).view(-1, 1, 1, 1)

    def _cutout(self, x: Tensor) -> Tensor:
        """Zero a square (side cutout_size of the image) around a uniformly random centre."""
        if not self.cutout:
            return x
        n, _, h, w = x.shape
        on = self._chance(n, self.cutout, x.device)
        centre = torch.rand([n, 2, 1, 1], device=x.device)  # (cx, cy) in [0, 1)
        ys = ((torch.arange(h, device=x.device) + 0.5) / h).view(1, h, 1)
        xs = ((torch.arange(w, device=x.device) + 0.5) / w).view(1, 1, w)
        inside = ((xs - centre[:, 0]).abs() < self.cutout_size / 2) & (
            (ys - centre[:, 1]).abs() < self.cutout_size / 2
        )  # [N, H, W]
        keep = ~(inside & on[:, None, None])
        return x * keep.unsqueeze(1).to(x.dtype)
