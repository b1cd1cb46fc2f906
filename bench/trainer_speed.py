"""Trainer speed in sec/kimg with the real `auto` networks; prints one JSON line.

Times whole minibatches (G main every step, path length every 4 on half the batch, D main every
step, R1 every 16, style mixing, EMA, ADA on) in windows of 16 steps, so each window holds the
same work, and reports the median window converted to seconds per 1000 real images, plus a
best case from the fastest step of each kind (shared machines make windows noisy).

    python bench/trainer_speed.py                      # 32 and 64, batch 8, CPU fp32
    python bench/trainer_speed.py --res 256 --batch 16 --device cuda --bf16 --channels-last
    python bench/trainer_speed.py --bf16                # mixed precision on the CPU (AMX)
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from trainer.config import (  # noqa: E402
    AugmentConfig,
    LossConfig,
    NetworkConfig,
    RunConfig,
    TrainConfig,
    default_bf16_min_res,
    preset_values,
)
from trainer.dataset import ImageDataset  # noqa: E402
from trainer.training import Trainer  # noqa: E402

WINDOW = 16  # lcm of the R1 (16) and path-length (4) intervals: any 16 steps hold equal work


def synthetic_dataset(n: int, res: int) -> ImageDataset:
    """Soft discs on a dark background, 8-bit: content does not change the speed."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:res, 0:res] / res * 2 - 1
    imgs = [(((xx - rng.uniform(-0.3, 0.3)) ** 2 + yy**2) < 0.4) * 200 + 20 for _ in range(n)]
    arr = np.stack(imgs).astype(np.uint8)[:, None]
    return ImageDataset(torch.from_numpy(arr), 8, None, [f"{i}" for i in range(n)])


def build(res: int, args, device: torch.device) -> Trainer:
    pv = preset_values("auto", res, 1, args.batch)
    cuda = device.type == "cuda"
    net = NetworkConfig(
        img_resolution=res,
        mapping_layers=pv["mapping_layers"],
        channel_base=pv["channel_base"],
        channel_max=pv["channel_max"],
        mbstd_group_size=pv["mbstd_group_size"],
        bf16_min_res=default_bf16_min_res(res, args.bf16, cuda),
    )
    train = TrainConfig(
        batch=args.batch,
        lr=pv["lr"],
        ema_kimg=pv["ema_kimg"],
        channels_last=args.channels_last,
        compile=args.compile,
        cpu_bf16=args.bf16 and not cuda,  # the trainer's --bf16 on a CPU
    )
    cfg = RunConfig(net, LossConfig(r1_gamma=pv["r1_gamma"]), AugmentConfig(mode="ada"), train)
    trainer = Trainer(cfg, synthetic_dataset(64, res).to(device), device)
    trainer.augment_pipe.p.fill_(0.2)  # ADA mid-way: the pipeline really runs
    return trainer


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _kinds(trainer: Trainer) -> str:
    """Which phase pattern the next step runs: 'all' (R1 too), 'pl' or 'main'."""
    i, lc = trainer.batch_idx, trainer.cfg.loss
    return "all" if i % lc.r1_interval == 0 else "pl" if i % lc.pl_interval == 0 else "main"


def best_case(times: list[tuple[str, float]], batch: int) -> float | None:
    """sec/kimg from the fastest step of each kind, weighted by how often it occurs: on a
    shared machine the minimum is the least disturbed estimate."""
    best: dict[str, float] = {}
    for kind, t in times:
        best[kind] = min(t, best.get(kind, t))
    if len(best) < 3:
        return None
    per_step = (best["all"] + 3 * best["pl"] + 12 * best["main"]) / WINDOW
    return per_step / batch * 1000


def measure_quick(res: int, args, device: torch.device) -> dict:
    """Best case only, from `--quick` timed steps of each kind (all, pl, main): the schedule
    position is set directly, so a loaded machine needs 3 x quick steps instead of 16+."""
    trainer = build(res, args, device)
    for _ in range(args.warmup):
        trainer.step()
    times, cpu_times = [], []
    for _ in range(args.quick):
        for offset in (0, 4, 1):  # batch_idx % 16 == 0: all phases; % 4 == 0: pl; else main
            trainer.batch_idx = (trainer.batch_idx // 16 + 1) * 16 + offset
            kind = _kinds(trainer)
            sync(device)
            t0, c0 = time.perf_counter(), time.process_time()
            trainer.step()
            sync(device)
            times.append((kind, time.perf_counter() - t0))
            cpu_times.append((kind, time.process_time() - c0))
    best, cpu = best_case(times, args.batch), best_case(cpu_times, args.batch)
    # CPU seconds of this process: on a shared machine (with --threads 1) the steadier figure.
    return {"res": res, "best_case_sec_per_kimg": None if best is None else round(best, 2),
            "cpu_sec_per_kimg": None if cpu is None else round(cpu, 2)}  # fmt: skip


def measure(res: int, args, device: torch.device) -> dict:
    if args.quick:
        return measure_quick(res, args, device)
    trainer = build(res, args, device)
    for _ in range(args.warmup):
        trainer.step()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    times = []
    for _ in range(max(args.steps // WINDOW, 1) * WINDOW):
        kind = _kinds(trainer)
        sync(device)
        t0 = time.perf_counter()
        trainer.step()
        sync(device)
        times.append((kind, time.perf_counter() - t0))
    windows = [
        sum(t for _, t in times[i : i + WINDOW]) / (WINDOW * args.batch) * 1000
        for i in range(0, len(times), WINDOW)
    ]
    best = best_case(times, args.batch)
    out = {
        "res": res,
        "sec_per_kimg": round(statistics.median(windows), 2),
        "windows_sec_per_kimg": [round(w, 2) for w in windows],
        "best_case_sec_per_kimg": None if best is None else round(best, 2),
    }
    if device.type == "cuda":
        out["peak_gpu_mem_gb"] = round(torch.cuda.max_memory_allocated(device) / 2**30, 2)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--res", default="32,64", help="comma-separated resolutions")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--steps", type=int, default=32, help="timed minibatches (multiple of 16)")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--quick", type=int, default=0, help="N: best case from N steps per kind")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--bf16", action=argparse.BooleanOptionalAction, default=False)
    p.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=False)
    p.add_argument("--compile", action=argparse.BooleanOptionalAction, default=False)
    p.add_argument("--threads", type=int, help="torch CPU threads (default: torch's)")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True
    results = [measure(int(r), args, device) for r in args.res.split(",")]
    print(
        json.dumps(
            {
                "bench": "trainer_speed",
                "device": args.device,
                "load_avg_1m": round(os.getloadavg()[0], 2),
                "batch": args.batch,
                "bf16": args.bf16,
                "channels_last": args.channels_last,
                "compile": args.compile,
                "results": results,
                "cpu_count": os.cpu_count(),
                "threads": torch.get_num_threads(),
                "torch": torch.__version__,
                "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
            }
        )
    )


if __name__ == "__main__":
    main()
