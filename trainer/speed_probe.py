"""`info speed TRAIN_FLAGS...`: this machine's seconds per kimg for one job's network, measured.

A duration estimate scaled from a constant was several times off on a new machine; a few real
training steps of the very network the job would build (the same flags, the same config
builder, a synthetic dataset of its size) are not. One warm-up step, then one timed step of
each phase pattern (G, D, path length, R1 fall on different steps), weighted by how often
each pattern occurs: seconds, not minutes, for the CPU preset.
"""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np
import torch


def _synthetic(res: int, cond: bool, n: int = 32) -> Any:
    """Soft discs at `res`² (content does not change the speed), labelled 0/1 when `cond`."""
    from trainer.dataset import ImageDataset

    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:res, 0:res] / res * 2 - 1
    imgs = [(((xx - rng.uniform(-0.3, 0.3)) ** 2 + yy**2) < 0.4) * 200 + 20 for _ in range(n)]
    labels = np.arange(n) % 2 if cond else None
    arr = torch.from_numpy(np.stack(imgs).astype(np.uint8)[:, None])
    return ImageDataset(arr, 8, labels, [f"{i}" for i in range(n)])


def _patterns(trainer: Any) -> dict[tuple[str, ...], tuple[int, int]]:
    """{due phases: (a step index where exactly they run, how many steps of a window)}."""
    intervals = [p.interval for p in trainer.phases]
    window = math.lcm(*intervals) if intervals else 1
    out: dict[tuple[str, ...], tuple[int, int]] = {}
    for i in range(window):
        key = tuple(p.name for p in trainer.phases if i % p.interval == 0)
        first, count = out.get(key, (i, 0))
        out[key] = (first, count + 1)
    return out


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def probe(train_flags: list[str]) -> dict[str, Any]:
    """{"sec_per_kimg", "device", "batch", "res", "probe_s"} for `train` with these flags
    (without --data and --outdir; --res is required)."""
    from trainer.device_setup import training_device
    from trainer.options import config_from_args
    from trainer.parser import build_parser
    from trainer.training import Trainer

    t_start = time.perf_counter()
    args = build_parser().parse_args(["train", "--outdir", "-", *train_flags])
    if not args.res:
        raise ValueError("info speed needs --res")
    device = training_device(args.device or "auto")
    ds = _synthetic(args.res, bool(args.cond))
    cfg = config_from_args(args, ds, 1, device.type == "cuda")
    trainer = Trainer(cfg, ds.to(device) if device.type == "cuda" else ds, device)
    if trainer.ada is not None:
        trainer.augment_pipe.p.fill_(0.2)  # mid-run ADA: the augmentations really run
    patterns = _patterns(trainer)
    window = sum(n for _, n in patterns.values())
    trainer.step()  # warm-up: allocation, kernel choice
    total = 0.0
    for first, count in patterns.values():
        trainer.batch_idx = (trainer.batch_idx // window + 1) * window + first
        _sync(device)
        t0 = time.perf_counter()
        trainer.step()
        _sync(device)
        total += (time.perf_counter() - t0) * count
    per_step = total / window
    return {
        "sec_per_kimg": round(per_step / cfg.train.batch * 1000, 3),
        "device": device.type,
        "batch": cfg.train.batch,
        "res": args.res,
        "threads": torch.get_num_threads(),
        "probe_s": round(time.perf_counter() - t_start, 2),
    }
