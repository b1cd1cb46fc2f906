"""Training configuration as frozen dataclasses, built once by the CLI and stored in every snapshot.

Presets:
  auto   the reference's "auto" configuration, from the resolution and the number of processes:
         batch = clamp(world * min(4096 // res, 32), world, 64); minibatch-std group
         min(batch per process, 4); channel_base 16384 below 512², 32768 from 512²;
         channel_max 512; mapping depth 2; lr 0.0025 (0.002 from 1024²);
         gamma = 0.0002 * res² / batch; EMA = batch * 10 / 32 kimg with ramp-up 0.05.
  paper  StyleGAN2 config F: mapping depth 8, batch 32, group 4, channel_base 32768,
         lr 0.002, EMA 10 kimg without ramp-up, gamma 10 at 1024² scaled by (res / 1024)².
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

PRESETS = ("auto", "paper")


@dataclass(frozen=True)
class NetworkConfig:
    """Everything the generator and discriminator constructors need."""

    img_resolution: int
    img_channels: int = 1
    label_channels: int = 0  # the last label_channels of img_channels are mask channels
    c_dim: int = 0
    z_dim: int = 512
    w_dim: int = 512
    mapping_layers: int = 2
    channel_base: int = 16384
    channel_max: int = 512
    mbstd_group_size: int = 4
    mbstd_num_channels: int = 1
    conv_clamp: int | None = 256
    d_mapping_layers: int = 8  # depth of D's label embedding (the reference's 8)
    bf16_min_res: int = 0  # 0 = all fp32; else layers at >= this resolution run in bf16

    def generator_kwargs(self) -> dict[str, Any]:
        return dict(
            z_dim=self.z_dim,
            c_dim=self.c_dim,
            w_dim=self.w_dim,
            img_resolution=self.img_resolution,
            img_channels=self.img_channels,
            label_channels=self.label_channels,
            mapping_layers=self.mapping_layers,
            channel_base=self.channel_base,
            channel_max=self.channel_max,
            bf16_min_res=self.bf16_min_res,
            conv_clamp=self.conv_clamp,
        )

    def discriminator_kwargs(self) -> dict[str, Any]:
        return dict(
            c_dim=self.c_dim,
            img_resolution=self.img_resolution,
            img_channels=self.img_channels,
            channel_base=self.channel_base,
            channel_max=self.channel_max,
            mbstd_group_size=self.mbstd_group_size,
            mbstd_num_channels=self.mbstd_num_channels,
            bf16_min_res=self.bf16_min_res,
            conv_clamp=self.conv_clamp,
            mapping_layers=self.d_mapping_layers,
        )


@dataclass(frozen=True)
class LossConfig:
    """Loss weights and lazy-regularisation intervals (StyleGAN2 section 3.1 and 3.2)."""

    r1_gamma: float = 10.0
    r1_interval: int = 16
    pl_weight: float = 2.0
    pl_interval: int = 4
    pl_decay: float = 0.01
    pl_batch_shrink: int = 2
    style_mixing: float = 0.9


@dataclass(frozen=True)
class AugmentConfig:
    """ADA settings; mode 'ada' tunes p, 'fixed' keeps p, 'noaug' builds no pipeline.
    `pipe` names the paper's transform groups (trainer.augment.AUGPIPES); `pipe_kwargs`
    overrides single multipliers or strengths on top of it."""

    mode: str = "ada"
    pipe: str = "bgc"
    target: float = 0.6
    initial_p: float = 0.0
    interval: int = 4
    kimg: float = 500.0
    pipe_kwargs: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class TrainConfig:
    """Optimiser, schedule, bookkeeping and device options of one run."""

    batch: int
    lr: float = 0.0025
    betas: tuple[float, float] = (0.0, 0.99)
    eps: float = 1e-8
    ema_kimg: float = 10.0
    ema_rampup: float | None = 0.05
    total_kimg: float = 25000.0
    kimg_per_tick: float = 4.0
    snap_ticks: int = 50
    seed: int = 0
    mirror: bool = False
    cond: bool = False
    preset: str = "auto"
    device: str = "auto"
    channels_last: bool = False
    compile: bool = False
    cpu_bf16: bool = False  # the bf16 layers run in bf16 on a CPU too (--bf16 on a CPU run)
    workers: int = 1
    grid_seed: int = 0
    data: str = ""
    metrics_every: int = 0  # FID/KID at every N-th snapshot (and the last); 0 = off
    metrics_num: int = 2000  # generated samples per measurement: a curve, not a final number
    metrics_extractor_module: str = ""  # MODULE[:FUNCTION] registering a feature extractor


@dataclass(frozen=True)
class RunConfig:
    """The whole set of options of one run."""

    network: NetworkConfig
    loss: LossConfig
    augment: AugmentConfig
    train: TrainConfig

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @staticmethod
    def from_dict(d: dict[str, Any]) -> RunConfig:
        train = dict(d["train"])
        train["betas"] = tuple(train["betas"])
        return RunConfig(
            network=NetworkConfig(**{"d_mapping_layers": 2, **d["network"]}),  # older: 2
            loss=LossConfig(**d["loss"]),
            augment=AugmentConfig(**{"pipe": "bgcfnc", **d["augment"]}),  # older runs: all
            train=TrainConfig(**train),
        )


def auto_batch(res: int, world_size: int = 1) -> int:
    """The reference auto batch: 32 per process below 256², shrinking at high resolution."""
    return max(min(world_size * min(4096 // res, 32), 64), world_size)


def preset_values(preset: str, res: int, world_size: int = 1, batch: int | None = None) -> dict:
    """Defaults of a preset for one resolution; `batch` overrides the preset's batch."""
    if preset == "auto":
        mb = batch or auto_batch(res, world_size)
        return dict(
            batch=mb,
            mbstd_group_size=min(mb // world_size, 4),
            channel_base=32768 if res >= 512 else 16384,
            channel_max=512,
            mapping_layers=2,
            lr=0.002 if res >= 1024 else 0.0025,
            r1_gamma=0.0002 * res**2 / mb,
            ema_kimg=mb * 10 / 32,
            ema_rampup=0.05,
        )
    if preset == "paper":
        mb = batch or 32
        return dict(
            batch=mb,
            mbstd_group_size=min(mb // world_size, 4),
            channel_base=32768,
            channel_max=512,
            mapping_layers=8,
            lr=0.002,
            r1_gamma=10.0 * (res / 1024) ** 2,
            ema_kimg=10.0,
            ema_rampup=None,
        )
    raise ValueError(f"unknown preset {preset!r}; choose from {', '.join(PRESETS)}")


def bf16_min_res(res: int) -> int:
    """The reference runs its four highest resolutions in fp16 (num_fp16_res=4), never below
    8²: res/8 for a power of two. Ours runs those blocks in bf16."""
    return min(max(res // 8, 8), res)


def default_bf16_min_res(res: int, enabled: bool | None, cuda: bool) -> int:
    """Mixed precision as the reference: by default on CUDA; on a CPU only with --bf16
    (CPU runs default to fp32); --no-bf16 keeps every layer fp32. 0 = all fp32."""
    if enabled is False or (enabled is None and not cuda):
        return 0
    return bf16_min_res(res)
