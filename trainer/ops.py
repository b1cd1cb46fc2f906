"""Low-level tensor ops for StyleGAN2: FIR resampling, modulated convolution, equalized lr.

Conventions: images are `[N, C, H, W]`; 2D filters are `[fh, fw]`; `padding` for FIR ops is
`(x0, x1, y0, y1)` (left, right, top, bottom), negative values crop.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

LRELU_SLOPE = 0.2
LRELU_GAIN = math.sqrt(2.0)


def setup_filter(
    f: Sequence[float] | Tensor = (1, 3, 3, 1),
    normalize: bool = True,
    device: torch.device | str | None = None,
) -> Tensor:
    """Build a 2D FIR filter `[fh, fw]`: a 1D filter becomes its separable outer product."""
    f = torch.as_tensor(f, dtype=torch.float32, device=device)
    if f.ndim == 1:
        f = torch.outer(f, f)
    assert f.ndim == 2, "filter must be 1D or 2D"
    if normalize:
        f = f / f.sum()
    return f


def _as_padding(padding: int | Sequence[int]) -> tuple[int, int, int, int]:
    if isinstance(padding, int):
        return (padding, padding, padding, padding)
    if len(padding) == 2:  # (px, py)
        return (padding[0], padding[0], padding[1], padding[1])
    x0, x1, y0, y1 = padding
    return (x0, x1, y0, y1)


def _depthwise(f: Tensor, channels: int, dtype: torch.dtype) -> Tensor:
    """A `[C, 1, fh, fw]` weight applying `f` to each channel separately."""
    return f.to(dtype)[None, None].expand(channels, 1, *f.shape)


def _fir_matrix(
    f1: Tensor, size: int, up: int, down: int, p0: int, p1: int, gain: float, dtype
) -> Tensor:
    """One axis of upfirdn as a matrix `[out, in]`: y[o] = sum_i x[i] f[K-1-j], j = i*up -
    o*down + p0 for 0 <= j < K (zero insertion, padding or cropping, true convolution,
    decimation). Built on f's device from index arithmetic: no host sync."""
    k = f1.numel()
    out = (size * up + p0 + p1 - k) // down + 1
    o = torch.arange(out, device=f1.device).view(-1, 1)
    i = torch.arange(size, device=f1.device).view(1, -1)
    j = i * up - o * down + p0
    taps = f1.flip(0)[j.clamp(0, k - 1)]
    return torch.where((j >= 0) & (j < k), taps, 0.0).to(dtype) * gain


def upfirdn2d(
    x: Tensor,
    f: Tensor,
    up: int = 1,
    down: int = 1,
    padding: int | Sequence[int] = 0,
    gain: float = 1.0,
    separable: bool = False,
) -> Tensor:
    """Upsample by zero insertion, pad, convolve with FIR `f` (times `gain`), keep every `down`-th.

    Zero insertion puts `up - 1` zeros after each input sample, so a `[N, C, H, W]` input gives
    `H * up + y0 + y1 - fh + 1` rows before downsampling. Convolution is true (flipped) 2D
    convolution; upsampling runs as a strided transposed conv, downsampling as a strided conv.

    `separable=True` (a normalised outer-product filter, as all of the networks' are) runs on
    the CPU as two small matrix products, y = A_h x A_w^T, which the CPU's BLAS does far faster
    than a depthwise convolution, and whose double backward (R1, path length) is two more
    products: the grouped convolution's double backward makes one call per channel there
    (512 calls per layer), and its transposed form loops over samples. CUDA keeps the grouped
    convolutions (cuDNN).
    """
    n, c, h, w = x.shape
    x0, x1, y0, y1 = _as_padding(padding)
    fh, fw = f.shape
    if separable and x.device.type == "cpu":  # two matrix products: see below
        # f = outer(u, v): its column sums are v * sum(u), its row sums over the total u / sum(u).
        a_w = _fir_matrix(f.sum(dim=0), w, up, down, x0, x1, 1.0, x.dtype)
        a_h = _fir_matrix(f.sum(dim=1) / f.sum(), h, up, down, y0, y1, gain, x.dtype)
        return torch.matmul(a_h, torch.matmul(x, a_w.t()))
    weight = _depthwise(f * gain, c, x.dtype)
    if up > 1:
        # conv_transpose2d(x, f, stride=up) is the *full* convolution of the zero-inserted signal
        # without its trailing zeros; shifting by the requested padding gives the valid part.
        x = F.conv_transpose2d(x, weight, stride=up, groups=c)
        x = F.pad(x, [x0 - (fw - 1), x1 + up - 1 - (fw - 1), y0 - (fh - 1), y1 + up - 1 - (fh - 1)])
        return x[:, :, ::down, ::down] if down > 1 else x
    x = F.pad(x, [x0, x1, y0, y1])
    return F.conv2d(x, weight.flip([2, 3]), stride=down, groups=c)


def upsample2d(x: Tensor, f: Tensor, up: int = 2, gain: float = 1.0) -> Tensor:
    """Upsample `[N, C, H, W]` to `[N, C, H*up, W*up]`, interpolating with separable FIR `f`."""
    fh, fw = f.shape
    px0, px1 = (fw + up - 1) // 2, (fw - up) // 2
    py0, py1 = (fh + up - 1) // 2, (fh - up) // 2
    return upfirdn2d(x, f, up=up, padding=(px0, px1, py0, py1), gain=gain * up * up, separable=True)


def downsample2d(x: Tensor, f: Tensor, down: int = 2, gain: float = 1.0) -> Tensor:
    """Downsample `[N, C, H, W]` to `[N, C, H/down, W/down]`, low-passing with FIR `f` first."""
    fh, fw = f.shape
    px0, px1 = (fw - down + 1) // 2, (fw - down) // 2
    py0, py1 = (fh - down + 1) // 2, (fh - down) // 2
    return upfirdn2d(x, f, down=down, padding=(px0, px1, py0, py1), gain=gain, separable=True)


def conv2d_resample(
    x: Tensor,
    weight: Tensor,
    f: Tensor | None = None,
    up: int = 1,
    down: int = 1,
    padding: int = 0,
    groups: int = 1,
) -> Tensor:
    """Cross-correlate `x` with `weight` `[O, I/groups, k, k]`, optionally with FIR resampling.

    Without resampling this is `conv2d(x, weight, padding=padding)`. With `up` (transposed conv,
    then FIR blur) or `down` (FIR blur, then strided conv; for a 1x1 kernel, a decimating blur
    then a channel product) the output is `H * up` or `H / down`, pixel-centred like a "same"
    convolution; `padding` is then ignored.
    """
    c_out, c_in, kh, kw = weight.shape  # c_in is per group
    if up == 1 and down == 1:
        return F.conv2d(x, weight, padding=padding, groups=groups)
    assert f is not None and (up == 1 or down == 1), "resampling needs a filter, up or down"
    fh, fw = f.shape
    if up > 1:
        # Transposed conv = zero insertion + true convolution, so flip to get correlation.
        w = weight.reshape(groups, c_out // groups, c_in, kh, kw).transpose(1, 2)
        w = w.reshape(groups * c_in, c_out // groups, kh, kw).flip([2, 3])
        x = F.conv_transpose2d(x, w, stride=up, groups=groups)
        px, py = fw - kw + up - 1, fh - kh + up - 1  # total pad keeping the output pixel-centred
        pad = ((px + 1) // 2, px // 2, (py + 1) // 2, py // 2)
        return upfirdn2d(x, f, padding=pad, gain=up * up, separable=True)
    px, py = fw + kw - down - 1, fh + kh - down - 1
    pad = ((px + 1) // 2, px // 2, (py + 1) // 2, py // 2)
    if kh == kw == 1 and groups == 1:
        # 1x1 (D's skip): decimate in the FIR, as the reference does (a quarter of its outputs),
        # then mix channels by one matrix product. mkldnn reads a 1x1 weight as channels_last
        # too, whose output then makes the gradients behind it channels_last: a copy of the
        # activations at each neighbouring convolution.
        x = upfirdn2d(x, f, down=down, padding=pad, separable=True)
        n, _, h, w = x.shape
        y = torch.matmul(weight.reshape(c_out, c_in), x.reshape(n, c_in, h * w))
        return y.reshape(n, c_out, h, w)
    x = upfirdn2d(x, f, padding=pad, separable=True)
    return F.conv2d(x, weight, stride=down, groups=groups)


def modulated_conv2d(
    x: Tensor,
    weight: Tensor,
    styles: Tensor,
    demodulate: bool = True,
    up: int = 1,
    down: int = 1,
    padding: int = 0,
    resample_filter: Tensor | None = None,
    fused: bool = True,
) -> Tensor:
    """StyleGAN2 weight (de)modulation: each sample convolves with `weight * style`, rescaled so
    that unit-variance inputs give unit-variance outputs.

    x `[N, I, H, W]`, weight `[O, I, k, k]`, styles `[N, I]`. `fused=True` runs one grouped
    convolution with per-sample weights; `fused=False` scales activations instead (same result).
    `up`/`down`/`padding` behave as in `conv2d_resample`. Demodulation coefficients are fp32.
    """
    n, c_in, h, w_ = x.shape
    c_out = weight.shape[0]
    ftype = torch.promote_types(weight.dtype, torch.float32)  # fp32 or better
    dcoefs = None
    if demodulate:
        # sum_{i,k} (w_oik s_i)^2 = sum_i s_i^2 sum_k w_oik^2: no [N, O, I, k, k] tensor needed.
        wsq = weight.to(ftype).square().sum(dim=[2, 3])  # [O, I]
        dcoefs = (styles.to(ftype).square() @ wsq.t() + 1e-8).rsqrt()  # [N, O]
    if not fused:
        x = x * styles.to(x.dtype)[:, :, None, None]
        x = conv2d_resample(x, weight.to(x.dtype), resample_filter, up, down, padding)
        return x if dcoefs is None else x * dcoefs.to(x.dtype)[:, :, None, None]
    w = weight.to(ftype)[None] * styles.to(ftype)[:, None, :, None, None]  # [N, O, I, k, k]
    if dcoefs is not None:
        w = w * dcoefs[:, :, None, None, None]
    x = x.reshape(1, n * c_in, h, w_)  # samples become groups
    w = w.reshape(n * c_out, *w.shape[2:])
    x = conv2d_resample(x, w, resample_filter, up, down, padding, groups=n)
    return x.reshape(n, c_out, *x.shape[2:])


def bias_act(
    x: Tensor,
    b: Tensor | None = None,
    activation: str = "linear",
    gain: float = 1.0,
    clamp: float | None = None,
    x_gain: float = 1.0,
) -> Tensor:
    """act(x * x_gain + b) * gain, clamped to `[-clamp, clamp]` if given (keeps reduced-precision
    layers finite): b is a per-channel bias (dim 1), act 'linear' or 'lrelu' (slope 0.2, gain
    sqrt(2)).

    Both activations are positively homogeneous, act(v) * g == act(v * g), so every scale rides
    on the one bias add (a single pass over x), and the clamp is hardtanh: clamp with a
    one-kernel backward (clamp's is two compares, an and and a where; they differ only at
    exactly +-clamp)."""
    if activation == "lrelu":
        gain = gain * LRELU_GAIN
    elif activation != "linear":
        raise ValueError(f"unknown activation {activation!r}")
    scale = x_gain * gain
    if b is not None:
        b = b.to(x.dtype).reshape([1, -1] + [1] * (x.ndim - 2))
        x = torch.add(b * gain, x, alpha=scale)
    elif scale != 1:
        x = x * scale
    if activation == "lrelu":
        x = F.leaky_relu(x, LRELU_SLOPE)
    if clamp is not None:
        x = F.hardtanh(x, -clamp, clamp)
    return x


def normalize_2nd_moment(x: Tensor, dim: int = 1, eps: float = 1e-8) -> Tensor:
    """Scale each vector to unit root-mean-square along `dim` (used for z and embedded c)."""
    return x * (x.square().mean(dim=dim, keepdim=True) + eps).rsqrt()


def equalized_gain(fan_in: int, lr_multiplier: float = 1.0) -> float:
    """Runtime weight scale for equalized learning rate: He init applied at every forward."""
    return lr_multiplier / math.sqrt(fan_in)


def equalized_weight(shape: Sequence[int], lr_multiplier: float = 1.0) -> torch.nn.Parameter:
    """A weight stored as N(0, 1/lr_multiplier^2), so that the optimizer's step in the effective
    weight (stored * `equalized_gain`) is scaled by `lr_multiplier`."""
    return torch.nn.Parameter(torch.randn(list(shape)) / lr_multiplier)
