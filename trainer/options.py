"""From command-line arguments to a RunConfig: presets, explicit overrides, resume rules."""

from __future__ import annotations

import argparse
import dataclasses

from trainer.augment_names import AUGPIPES
from trainer.config import (
    AugmentConfig,
    LossConfig,
    NetworkConfig,
    RunConfig,
    TrainConfig,
    default_bf16_min_res,
    preset_values,
)
from trainer.dataset import ImageDataset


class UsageError(ValueError):
    """Options that do not fit together or do not fit the snapshot (exit code 2)."""


# Options that may change when a run is continued with --resume latest.
RESUME_OVERRIDES = {
    "kimg": "total_kimg",
    "snap": "snap_ticks",
    "device": "device",
    "workers": "workers",
    "compile": "compile",
    "channels_last": "channels_last",
    "metrics_every": "metrics_every",  # measurements never touch the training state
    "metrics_num": "metrics_num",
    "metrics_extractor_module": "metrics_extractor_module",
}


def _pick(value, default):
    return default if value is None else value


def _augment_config(args: argparse.Namespace) -> AugmentConfig:
    aug = _pick(args.aug, "ada")
    if aug not in ("ada", "noaug"):
        raise UsageError(f"--aug must be ada or noaug, not {aug!r}")
    pipe = _pick(getattr(args, "augpipe", None), "bgc")
    if pipe not in AUGPIPES:
        raise UsageError(f"--augpipe must be one of {', '.join(AUGPIPES)}, not {pipe!r}")
    if aug == "noaug":
        if args.p is not None:
            raise UsageError("--p needs augmentation; it does not go with --aug noaug")
        return AugmentConfig(mode="noaug", pipe=pipe)
    if args.p is not None:
        if not 0 <= args.p <= 1:
            raise UsageError("--p must be in [0, 1]")
        return AugmentConfig(mode="fixed", initial_p=args.p, pipe=pipe)
    return AugmentConfig(
        mode="ada", target=_pick(args.target, 0.6), kimg=_pick(args.ada_kimg, 500.0), pipe=pipe
    )


def config_from_args(
    args: argparse.Namespace, dataset: ImageDataset, world_size: int, cuda: bool
) -> RunConfig:
    """A fresh run's configuration: preset values for the resolution, then explicit flags."""
    res = dataset.resolution
    if res < 8:
        raise UsageError(f"resolution {res} is too small: the discriminator needs >= 8")
    preset = _pick(args.cfg, "auto")
    pv = preset_values(preset, res, world_size, args.batch)
    batch = pv["batch"]
    if batch % world_size:
        raise UsageError(f"--batch {batch} is not divisible by the {world_size} processes")
    c_dim = dataset.c_dim if args.cond else 0
    net = NetworkConfig(
        img_resolution=res,
        img_channels=dataset.num_channels,  # the image, then one channel per mask label
        label_channels=dataset.label_channels,
        c_dim=c_dim,
        mapping_layers=_pick(args.map, pv["mapping_layers"]),
        channel_base=_pick(args.cbase, pv["channel_base"]),
        channel_max=_pick(args.cmax, pv["channel_max"]),
        mbstd_group_size=_pick(args.mbstd_group, pv["mbstd_group_size"]),
        d_mapping_layers=_pick(getattr(args, "dmap", None), 8),
        bf16_min_res=default_bf16_min_res(res, args.bf16, cuda),
    )
    if args.zdim is not None:
        net = dataclasses.replace(net, z_dim=args.zdim, w_dim=args.zdim)
    loss = LossConfig(r1_gamma=_pick(args.gamma, pv["r1_gamma"]))
    train = TrainConfig(
        batch=batch,
        lr=_pick(args.lr, pv["lr"]),
        ema_kimg=_pick(args.ema, pv["ema_kimg"]),
        ema_rampup=pv["ema_rampup"],
        total_kimg=_pick(args.kimg, 25000.0),
        kimg_per_tick=_pick(args.tick, 4.0),
        snap_ticks=_pick(args.snap, 50),
        seed=_pick(args.seed, 0),
        mirror=bool(args.mirror),
        cond=bool(args.cond),
        preset=preset,
        device=_pick(args.device, "auto"),
        channels_last=bool(args.channels_last),
        compile=bool(args.compile),
        cpu_bf16=not cuda and args.bf16 is True,
        workers=_pick(args.workers, 1),
        data=args.data or "",
        metrics_every=_pick(args.metrics_every, 0),
        metrics_num=_pick(args.metrics_num, 2000),
        metrics_extractor_module=args.metrics_extractor_module or "",
    )
    _check_train(train)
    return RunConfig(network=net, loss=loss, augment=_augment_config(args), train=train)


def _check_train(t: TrainConfig) -> None:
    if t.batch < 1 or t.kimg_per_tick <= 0 or t.snap_ticks < 1 or t.total_kimg < 0:
        raise UsageError("--batch, --tick and --snap must be positive, --kimg >= 0")
    if t.metrics_every < 0 or t.metrics_num < 2:
        raise UsageError("--metrics-every must be >= 0 (0 = off) and --metrics-num >= 2")


def resume_config(saved: dict, args: argparse.Namespace, ignored: list[str]) -> RunConfig:
    """The snapshot's configuration with only the options that may change replaced.

    Flags given that would change the run are listed in `ignored` (for a warning)."""
    cfg = RunConfig.from_dict(saved)
    updates = {}
    for flag, field in RESUME_OVERRIDES.items():
        value = getattr(args, flag, None)
        if value is not None:
            updates[field] = float(value) if field == "total_kimg" else value
    if args.data:
        updates["data"] = args.data
    fixed = (
        "res",
        "batch",
        "gamma",
        "aug",
        "augpipe",
        "target",
        "p",
        "cond",
        "tick",
        "seed",
        "cfg",
        "cbase",
        "cmax",
        "map",
        "dmap",
        "lr",
        "ema",
        "ada_kimg",
        "mirror",
        "bf16",
    )
    ignored.extend(f"--{f.replace('_', '-')}" for f in fixed if getattr(args, f, None) is not None)
    train = dataclasses.replace(cfg.train, **updates)
    _check_train(train)
    return dataclasses.replace(cfg, train=train)


def check_finetune(saved: dict, cfg: RunConfig) -> RunConfig:
    """A snapshot from another run must fit the data; its architecture replaces the flags'."""
    g = saved["G"]["init_kwargs"]
    have = (g["img_resolution"], g["img_channels"], g["c_dim"])
    want = (cfg.network.img_resolution, cfg.network.img_channels, cfg.network.c_dim)
    if have != want:
        raise UsageError(
            f"cannot fine-tune: the snapshot generates {have[0]}x{have[0]} images with "
            f"{have[1]} channel(s) and {have[2]} classes, the data needs {want[0]}x{want[0]}, "
            f"{want[1]} channel(s), {want[2]} classes"
        )
    d = saved["D"]["init_kwargs"]
    net = dataclasses.replace(
        cfg.network,
        z_dim=g["z_dim"],
        w_dim=g["w_dim"],
        mapping_layers=g["mapping_layers"],
        channel_base=g["channel_base"],
        channel_max=g["channel_max"],
        mbstd_group_size=d["mbstd_group_size"],
        mbstd_num_channels=d["mbstd_num_channels"],
        d_mapping_layers=d.get("mapping_layers", 2),
        conv_clamp=g["conv_clamp"],
    )
    return dataclasses.replace(cfg, network=net)
