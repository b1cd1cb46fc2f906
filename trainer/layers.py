"""Small StyleGAN2 layers, all with equalized learning rate (weights scaled at runtime)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from trainer import ops

RESAMPLE_FILTER = (1, 3, 3, 1)


def constructor_args(local_vars: dict) -> dict:
    """A constructor's own arguments, from `locals()` taken first thing in `__init__`; saved as
    `init_kwargs` so that `cls(**module.init_kwargs)` rebuilds the same module."""
    return {k: v for k, v in local_vars.items() if k not in ("self", "__class__")}


class FullyConnected(torch.nn.Module):
    """Equalized-lr dense layer; `lr_multiplier` slows its learning (0.01 in the mapping net)."""

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        bias_init: float = 0.0,
        lr_multiplier: float = 1.0,
        activation: str = "linear",
    ):
        super().__init__()
        self.activation = activation
        self.lr_multiplier = lr_multiplier
        self.weight = ops.equalized_weight([out_features, in_features], lr_multiplier)
        self.weight_gain = ops.equalized_gain(in_features, lr_multiplier)
        init = torch.full([out_features], float(bias_init) / lr_multiplier)
        self.bias = torch.nn.Parameter(init) if bias else None

    def forward(self, x: Tensor) -> Tensor:  # [N, in] -> [N, out]
        w = self.weight.to(x.dtype) * self.weight_gain
        b = None if self.bias is None else self.bias * self.lr_multiplier
        if self.activation == "linear" and b is not None:
            return torch.addmm(b.to(x.dtype).unsqueeze(0), x, w.t())
        return ops.bias_act(x.matmul(w.t()), b, self.activation)


class Conv2dLayer(torch.nn.Module):
    """Equalized-lr convolution with optional FIR up/down-sampling, bias and activation."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        bias: bool = True,
        activation: str = "linear",
        up: int = 1,
        down: int = 1,
        resample_filter: Sequence[float] = RESAMPLE_FILTER,
        conv_clamp: float | None = None,
    ):
        super().__init__()
        self.activation, self.up, self.down, self.conv_clamp = activation, up, down, conv_clamp
        self.padding = kernel_size // 2
        self.register_buffer("resample_filter", ops.setup_filter(resample_filter))
        self.weight = ops.equalized_weight([out_channels, in_channels, kernel_size, kernel_size])
        self.weight_gain = ops.equalized_gain(in_channels * kernel_size * kernel_size)
        self.bias = torch.nn.Parameter(torch.zeros([out_channels])) if bias else None

    def forward(self, x: Tensor, gain: float = 1.0) -> Tensor:
        """`gain` scales the output; `conv_clamp` (times gain) limits it at every precision,
        as in the reference."""
        f = self.resample_filter
        x = ops.conv2d_resample(x, self.weight.to(x.dtype), f, self.up, self.down, self.padding)
        # The equalized-lr gain goes on the (smaller) output, in the same pass as the bias, the
        # activation's gain and `gain`: no weight-sized multiply per call and in every backward.
        limit = self.conv_clamp * gain if self.conv_clamp is not None else None
        return ops.bias_act(x, self.bias, self.activation, gain, limit, x_gain=self.weight_gain)


class ModulatedConv(torch.nn.Module):
    """Convolution whose weights are scaled per sample by styles computed from w (no bias)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        w_dim: int,
        kernel_size: int = 3,
        demodulate: bool = True,
        up: int = 1,
        resample_filter: Sequence[float] = RESAMPLE_FILTER,
    ):
        super().__init__()
        self.demodulate, self.up, self.padding = demodulate, up, kernel_size // 2
        self.affine = FullyConnected(w_dim, in_channels, bias_init=1.0)  # styles start at 1
        self.weight = ops.equalized_weight([out_channels, in_channels, kernel_size, kernel_size])
        self.weight_gain = ops.equalized_gain(in_channels * kernel_size * kernel_size)
        self.register_buffer("resample_filter", ops.setup_filter(resample_filter))

    def forward(self, x: Tensor, w: Tensor) -> Tensor:  # x [N, I, H, W], w [N, w_dim]
        styles = self.affine(w.float()) * self.weight_gain  # [N, I], fp32
        return ops.modulated_conv2d(
            x,
            self.weight,
            styles,
            demodulate=self.demodulate,
            up=self.up,
            padding=self.padding,
            resample_filter=self.resample_filter,
            fused=not self.training,
        )


class SynthesisLayer(torch.nn.Module):
    """One generator layer: modulated 3x3 conv (optionally 2x up), per-pixel noise, bias, lrelu."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        w_dim: int,
        resolution: int,
        up: int = 1,
        use_noise: bool = True,
        conv_clamp: float | None = None,
        resample_filter: Sequence[float] = RESAMPLE_FILTER,
    ):
        super().__init__()
        self.resolution, self.use_noise, self.conv_clamp = resolution, use_noise, conv_clamp
        self.conv = ModulatedConv(in_channels, out_channels, w_dim, 3, True, up, resample_filter)
        if use_noise:
            self.register_buffer("noise_const", torch.randn([resolution, resolution]))
            self.noise_strength = torch.nn.Parameter(torch.zeros([]))
        self.bias = torch.nn.Parameter(torch.zeros([out_channels]))

    def forward(
        self, x: Tensor, w: Tensor, noise_mode: str = "random"
    ) -> Tensor:  # [N, I, H, W] -> [N, O, R, R]
        x = self.conv(x, w)
        if self.use_noise and noise_mode != "none":
            if noise_mode == "random":
                R = self.resolution
                noise = torch.randn([x.shape[0], 1, R, R], device=x.device)
            elif noise_mode == "const":
                noise = self.noise_const
            else:
                raise ValueError(f"unknown noise_mode {noise_mode!r}")
            x = x + (noise * self.noise_strength).to(x.dtype)
        return ops.bias_act(x, self.bias, "lrelu", clamp=self.conv_clamp)


class ToImage(torch.nn.Module):
    """1x1 modulated conv (no demodulation) from features to image channels, plus bias."""

    def __init__(
        self, in_channels: int, img_channels: int, w_dim: int, conv_clamp: float | None = None
    ):
        super().__init__()
        self.conv_clamp = conv_clamp
        self.conv = ModulatedConv(in_channels, img_channels, w_dim, 1, demodulate=False)
        self.bias = torch.nn.Parameter(torch.zeros([img_channels]))

    def forward(self, x: Tensor, w: Tensor) -> Tensor:  # -> [N, C_img, R, R]
        return ops.bias_act(self.conv(x, w), self.bias, clamp=self.conv_clamp)


class MinibatchStd(torch.nn.Module):
    """Append the std of features across groups of samples, so D can detect low variety.

    Groups are runs of consecutive samples (0..G-1, G..2G-1, ...), and a batch not divisible by
    `group_size` uses the largest divisor of N below it. The reference groups strided samples
    (i, i + N/G, ...) and refuses such a batch; with one group (N == G) both are the same."""

    def __init__(self, group_size: int = 4, num_channels: int = 1):
        super().__init__()
        self.group_size, self.num_channels = group_size, num_channels

    def forward(self, x: Tensor) -> Tensor:  # [N, C, H, W] -> [N, C + num_channels, H, W]
        N, C, H, W = x.shape
        G = max(g for g in range(1, min(self.group_size, N) + 1) if N % g == 0)
        F_ = self.num_channels
        y = x.float().reshape(N // G, G, F_, C // F_, H, W)  # contiguous groups of G samples
        y = (y.var(dim=1, unbiased=False) + 1e-8).sqrt()  # [N/G, F, C/F, H, W]
        y = y.mean(dim=[2, 3, 4])  # [N/G, F]
        y = y.repeat_interleave(G, dim=0).reshape(N, F_, 1, 1).expand(N, F_, H, W)
        return torch.cat([x, y.to(x.dtype)], dim=1)
