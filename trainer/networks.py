"""StyleGAN2 generator (mapping + skip synthesis) and residual discriminator."""

from __future__ import annotations

import contextlib
import math

import numpy as np
import torch
from torch import Tensor

from trainer import ops
from trainer.layers import (
    Conv2dLayer,
    FullyConnected,
    MinibatchStd,
    SynthesisLayer,
    ToImage,
    constructor_args,
)


def channels_for(res: int, channel_base: int, channel_max: int) -> int:
    """Feature maps at resolution `res`: halve as resolution doubles, capped at `channel_max`."""
    channels = min(channel_base // res, channel_max)
    if channels < 1:
        raise ValueError(f"channel_base={channel_base} leaves no channels at resolution {res}")
    return channels


def bf16_enabled(block: torch.nn.Module, x: Tensor) -> bool:
    """A bf16 block runs in bf16 on CUDA, and on the CPU only where `allow_cpu_bf16` said so
    (a training run given --bf16 on a CPU): generation, metrics and resumed CUDA runs on a
    CPU stay fp32, so their figures do not depend on the CPU's bf16 units."""
    if not block.use_bf16:
        return False
    return x.device.type == "cuda" or (x.device.type == "cpu" and block.cpu_bf16)


def allow_cpu_bf16(net: torch.nn.Module, enabled: bool = True) -> None:
    """Let the bf16 blocks of `net` (G, D or G_ema) run in bf16 on the CPU too."""
    for m in net.modules():
        if hasattr(m, "use_bf16"):
            m.cpu_bf16 = enabled


def _precision(use_bf16: bool, x: Tensor):
    """Autocast context for a block's convolutions (a no-op when bf16 is off)."""
    if not use_bf16:
        return contextlib.nullcontext()
    return torch.autocast(x.device.type, dtype=torch.bfloat16)


class MappingNetwork(torch.nn.Module):
    """Map (z, c) to the intermediate latent w, tracking its running mean for truncation."""

    def __init__(
        self,
        z_dim: int,
        c_dim: int,
        w_dim: int,
        num_ws: int | None,
        num_layers: int = 2,
        lr_multiplier: float = 0.01,
        w_avg_beta: float | None = 0.995,
    ):
        super().__init__()
        self.z_dim, self.c_dim, self.w_dim, self.num_ws = z_dim, c_dim, w_dim, num_ws
        self.w_avg_beta = w_avg_beta
        self.embed = FullyConnected(c_dim, w_dim) if c_dim > 0 else None
        features = [z_dim + (w_dim if c_dim > 0 else 0)] + [w_dim] * num_layers
        self.layers = torch.nn.Sequential(
            *[
                FullyConnected(i, o, activation="lrelu", lr_multiplier=lr_multiplier)
                for i, o in zip(features[:-1], features[1:], strict=True)
            ]
        )
        self.register_buffer("w_avg", torch.zeros([w_dim]))

    def forward(
        self,
        z: Tensor | None,
        c: Tensor | None = None,
        truncation_psi: float = 1.0,
        truncation_cutoff: int | None = None,
        update_emas: bool = False,
    ) -> Tensor:
        """z `[N, z_dim]`, c `[N, c_dim]` -> ws `[N, num_ws, w_dim]` (or `[N, w_dim]` if num_ws
        is None). Truncation pulls ws[:, :cutoff] toward w_avg by `1 - truncation_psi`."""
        parts = []
        if self.z_dim > 0:
            parts.append(ops.normalize_2nd_moment(z.float()))
        if self.c_dim > 0:
            assert c is not None, "conditional network needs c"
            parts.append(ops.normalize_2nd_moment(self.embed(c.float())))
        x = self.layers(torch.cat(parts, dim=1))  # [N, w_dim]
        if update_emas and self.w_avg_beta is not None:
            with torch.no_grad():
                self.w_avg.copy_(x.detach().mean(dim=0).lerp(self.w_avg, self.w_avg_beta))
        if self.num_ws is None:
            return x
        x = x.unsqueeze(1).repeat(1, self.num_ws, 1)  # [N, num_ws, w_dim]
        if truncation_psi != 1:
            cutoff = self.num_ws if truncation_cutoff is None else truncation_cutoff
            x[:, :cutoff] = self.w_avg.lerp(x[:, :cutoff], truncation_psi)
        return x


class SynthesisBlock(torch.nn.Module):
    """One resolution of the synthesis net: (const 4x4 | up-conv) + conv, and a ToImage skip."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        w_dim: int,
        resolution: int,
        img_channels: int,
        use_bf16: bool = False,
        conv_clamp: float | None = None,
    ):
        super().__init__()
        self.in_channels, self.resolution, self.use_bf16 = in_channels, resolution, use_bf16
        self.cpu_bf16 = False  # see allow_cpu_bf16
        if in_channels == 0:
            self.const = torch.nn.Parameter(torch.randn([out_channels, resolution, resolution]))
        else:
            self.conv0 = SynthesisLayer(
                in_channels, out_channels, w_dim, resolution, up=2, conv_clamp=conv_clamp
            )
        self.conv1 = SynthesisLayer(
            out_channels, out_channels, w_dim, resolution, conv_clamp=conv_clamp
        )
        self.torgb = ToImage(out_channels, img_channels, w_dim, conv_clamp=conv_clamp)
        self.register_buffer("resample_filter", ops.setup_filter())
        self.num_conv = 1 if in_channels == 0 else 2
        self.num_torgb = 1

    def forward(
        self, x: Tensor | None, img: Tensor | None, ws: Tensor, noise_mode: str = "random"
    ) -> tuple[Tensor, Tensor]:
        """ws `[N, num_conv + 1, w_dim]`: one per conv, the last for ToImage. Returns the block's
        features `[N, C, R, R]` and the running fp32 image `[N, img_channels, R, R]`."""
        use_bf16 = bf16_enabled(self, ws)
        w_iter = iter(ws.unbind(dim=1))
        with _precision(use_bf16, ws):
            if self.in_channels == 0:
                x = self.const.unsqueeze(0).expand(ws.shape[0], -1, -1, -1)
            else:
                x = self.conv0(x, next(w_iter), noise_mode)
            x = self.conv1(x, next(w_iter), noise_mode)
            y = self.torgb(x, next(w_iter))
        if img is not None:
            img = ops.upsample2d(img, self.resample_filter)
        img = y.float() if img is None else img + y.float()  # accumulate in fp32
        return x, img


class SynthesisNetwork(torch.nn.Module):
    """ws -> image: a chain of SynthesisBlocks from 4x4 to img_resolution (skip architecture)."""

    def __init__(
        self,
        w_dim: int,
        img_resolution: int,
        img_channels: int,
        channel_base: int = 16384,
        channel_max: int = 512,
        bf16_min_res: int = 0,
        conv_clamp: float | None = 256,
    ):
        super().__init__()
        log2 = int(np.log2(img_resolution))
        assert img_resolution == 2**log2 and img_resolution >= 4, "resolution must be 2^k >= 4"
        self.w_dim, self.img_resolution, self.img_channels = w_dim, img_resolution, img_channels
        self.block_resolutions = [2**i for i in range(2, log2 + 1)]
        self.blocks = torch.nn.ModuleList()
        self.num_ws = 0
        for res in self.block_resolutions:
            in_ch = 0 if res == 4 else channels_for(res // 2, channel_base, channel_max)
            out_ch = channels_for(res, channel_base, channel_max)
            use_bf16 = bf16_min_res > 0 and res >= bf16_min_res
            block = SynthesisBlock(in_ch, out_ch, w_dim, res, img_channels, use_bf16, conv_clamp)
            self.blocks.append(block)
            self.num_ws += block.num_conv
        self.num_ws += self.blocks[-1].num_torgb

    def forward(self, ws: Tensor, noise_mode: str = "random") -> Tensor:
        """ws `[N, num_ws, w_dim]` -> fp32 image `[N, img_channels, R, R]`."""
        ws = ws.float()
        x = img = None
        w_idx = 0
        for block in self.blocks:  # each ToImage shares its w with the next block's first conv
            block_ws = ws.narrow(1, w_idx, block.num_conv + block.num_torgb)
            x, img = block(x, img, block_ws, noise_mode)
            w_idx += block.num_conv
        return img


class Generator(torch.nn.Module):
    """StyleGAN2 generator: z (and optional class/condition c) -> image in about [-1, 1]."""

    def __init__(
        self,
        z_dim: int = 512,
        c_dim: int = 0,
        w_dim: int = 512,
        img_resolution: int = 256,
        img_channels: int = 1,
        mapping_layers: int = 2,
        channel_base: int = 16384,
        channel_max: int = 512,
        bf16_min_res: int = 0,
        conv_clamp: float | None = 256,
        label_channels: int = 0,
    ):
        init_kwargs = constructor_args(locals())
        super().__init__()
        self.init_kwargs = init_kwargs
        self.z_dim, self.c_dim, self.w_dim = z_dim, c_dim, w_dim
        self.img_resolution, self.img_channels = img_resolution, img_channels
        # Paired synthesis: the last `label_channels` outputs are mask channels (one per label).
        self.label_channels = label_channels
        self.image_channels = img_channels - label_channels
        self.synthesis = SynthesisNetwork(
            w_dim, img_resolution, img_channels, channel_base, channel_max, bf16_min_res, conv_clamp
        )
        self.num_ws = self.synthesis.num_ws
        self.mapping = MappingNetwork(z_dim, c_dim, w_dim, self.num_ws, num_layers=mapping_layers)

    def forward(
        self,
        z: Tensor,
        c: Tensor | None = None,
        truncation_psi: float = 1.0,
        truncation_cutoff: int | None = None,
        noise_mode: str = "random",
        update_emas: bool = False,
    ) -> Tensor:  # [N, z_dim] -> [N, img_channels, R, R]
        ws = self.mapping(z, c, truncation_psi, truncation_cutoff, update_emas=update_emas)
        return self.synthesis(ws, noise_mode=noise_mode)


class DiscriminatorBlock(torch.nn.Module):
    """Residual D block: (FromImage 1x1) conv3x3, conv3x3 + 2x down, plus a 1x1 down skip;
    both paths are scaled by sqrt(0.5) so the sum keeps unit variance."""

    def __init__(
        self,
        in_channels: int,
        tmp_channels: int,
        out_channels: int,
        resolution: int,
        img_channels: int,
        use_bf16: bool = False,
        conv_clamp: float | None = None,
    ):
        super().__init__()
        self.in_channels, self.resolution, self.use_bf16 = in_channels, resolution, use_bf16
        self.cpu_bf16 = False  # see allow_cpu_bf16
        if in_channels == 0:
            self.fromrgb = Conv2dLayer(
                img_channels, tmp_channels, 1, activation="lrelu", conv_clamp=conv_clamp
            )
        self.conv0 = Conv2dLayer(
            tmp_channels, tmp_channels, 3, activation="lrelu", conv_clamp=conv_clamp
        )
        self.conv1 = Conv2dLayer(
            tmp_channels, out_channels, 3, activation="lrelu", down=2, conv_clamp=conv_clamp
        )
        self.skip = Conv2dLayer(tmp_channels, out_channels, 1, bias=False, down=2)

    def forward(self, x: Tensor) -> Tensor:
        """x: the image `[N, img_channels, R, R]` for the first block, else features
        `[N, in_channels, R, R]`. Returns `[N, out_channels, R/2, R/2]`."""
        use_bf16 = bf16_enabled(self, x)
        x = x.to(torch.bfloat16 if use_bf16 else torch.float32)
        with _precision(use_bf16, x):
            if self.in_channels == 0:
                x = self.fromrgb(x)
            y = self.skip(x, gain=math.sqrt(0.5))
            x = self.conv0(x)
            x = self.conv1(x, gain=math.sqrt(0.5))
            return y + x


class DiscriminatorEpilogue(torch.nn.Module):
    """4x4 head in fp32: minibatch std, conv, fully connected, then one logit per sample
    (projected onto the condition embedding `cmap` when conditional)."""

    def __init__(
        self,
        in_channels: int,
        cmap_dim: int = 0,
        resolution: int = 4,
        mbstd_group_size: int = 4,
        mbstd_num_channels: int = 1,
        conv_clamp: float | None = None,
    ):
        super().__init__()
        self.cmap_dim = cmap_dim
        self.mbstd = None
        if mbstd_num_channels > 0:
            self.mbstd = MinibatchStd(mbstd_group_size, mbstd_num_channels)
        conv_in = in_channels + mbstd_num_channels
        self.conv = Conv2dLayer(conv_in, in_channels, 3, activation="lrelu", conv_clamp=conv_clamp)
        self.fc = FullyConnected(in_channels * resolution**2, in_channels, activation="lrelu")
        self.out = FullyConnected(in_channels, cmap_dim if cmap_dim > 0 else 1)

    def forward(self, x: Tensor, cmap: Tensor | None = None) -> Tensor:  # [N, C, 4, 4] -> [N, 1]
        x = x.float()
        if self.mbstd is not None:
            x = self.mbstd(x)
        x = self.fc(self.conv(x).flatten(1))
        x = self.out(x)  # [N, max(cmap_dim, 1)]
        if self.cmap_dim > 0:
            x = (x * cmap).sum(dim=1, keepdim=True) / math.sqrt(self.cmap_dim)
        return x


class Discriminator(torch.nn.Module):
    """StyleGAN2 residual discriminator: image (and optional condition c) -> realness logit."""

    def __init__(
        self,
        c_dim: int = 0,
        img_resolution: int = 256,
        img_channels: int = 1,
        channel_base: int = 16384,
        channel_max: int = 512,
        mbstd_group_size: int = 4,
        mbstd_num_channels: int = 1,
        cmap_dim: int | None = None,
        bf16_min_res: int = 0,
        conv_clamp: float | None = 256,
        mapping_layers: int = 8,
    ):
        """`mapping_layers`: depth of the label embedding (the reference's default, 8)."""
        init_kwargs = constructor_args(locals())
        super().__init__()
        self.init_kwargs = init_kwargs
        log2 = int(np.log2(img_resolution))
        assert img_resolution == 2**log2 and img_resolution >= 8, "resolution must be 2^k >= 8"
        self.c_dim, self.img_resolution, self.img_channels = c_dim, img_resolution, img_channels
        self.block_resolutions = [2**i for i in range(log2, 2, -1)]  # R, R/2, ..., 8

        def ch(res: int) -> int:
            return channels_for(res, channel_base, channel_max)

        self.blocks = torch.nn.ModuleList()
        for res in self.block_resolutions:
            in_ch = 0 if res == img_resolution else ch(res)
            use_bf16 = bf16_min_res > 0 and res >= bf16_min_res
            self.blocks.append(
                DiscriminatorBlock(
                    in_ch, ch(res), ch(res // 2), res, img_channels, use_bf16, conv_clamp
                )
            )
        self.cmap_dim = 0
        if c_dim > 0:
            self.cmap_dim = ch(4) if cmap_dim is None else cmap_dim
            self.mapping = MappingNetwork(
                0, c_dim, self.cmap_dim, None, num_layers=mapping_layers, w_avg_beta=None
            )
        self.epilogue = DiscriminatorEpilogue(
            ch(4), self.cmap_dim, 4, mbstd_group_size, mbstd_num_channels, conv_clamp
        )

    def forward(self, img: Tensor, c: Tensor | None = None) -> Tensor:
        """img `[N, img_channels, R, R]`, c `[N, c_dim]` -> fp32 logits `[N, 1]`."""
        x = img
        for block in self.blocks:
            x = block(x)
        cmap = self.mapping(None, c) if self.c_dim > 0 else None
        return self.epilogue(x, cmap)
