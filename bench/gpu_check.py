"""One-command proof of the CUDA path; prints one JSON line per figure ("check": name, "ok").

    python bench/gpu_check.py --outdir OUT            # one H100/H200: about 6-8 minutes
    python bench/gpu_check.py --device cpu --smoke    # tiny networks, seconds (run by a test)

Checks, in order (each line says ok, or why not; a failing check does not stop the others):
  agree     G and D forward on the device vs the CPU, same weights and inputs: fp32 within
            1e-3 relative (TF32 off); bf16 layers within 5e-2 relative (bf16 keeps 8 bits of
            mantissa, ~4e-3 per op, accumulated over ~14 layers); torch.compile vs eager 1e-3.
  resume    8 minibatches straight vs 4 + state_dict/RNG round trip + 4: the weights' largest
            difference, next to that of two straight runs (CUDA's atomic-add kernels, e.g. the
            grid_sample backward, are not bit-reproducible; equal up to that floor is ok).
  speed     sec/kimg and peak memory, the `auto` networks and the reference's per-step work
            (G main, G path length every 4, D main, R1 every 16, ADA bgc at p=0.2), 256^2
            batch 16 and 512^2 batch 8, fp32 and bf16 + channels_last (+ compile).
  fid10k    seconds for FID-10k of a 256^2 generator: 10k samples through a real-sized
            Inception-v3 (random weights: the same cost) and the Frechet distance.
  train     `python -m trainer train` on phantom slices at 128^2 for --train-seconds (240),
            stopped by SIGTERM; its snapshot's sample grid is copied to --outdir.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
import warnings

import numpy as np
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from bench.trainer_speed import WINDOW, synthetic_dataset  # noqa: E402
from trainer.config import (  # noqa: E402
    AugmentConfig,
    LossConfig,
    NetworkConfig,
    RunConfig,
    TrainConfig,
    bf16_min_res,
    preset_values,
)
from trainer.networks import Discriminator, Generator, allow_cpu_bf16  # noqa: E402
from trainer.snapshot import capture_rng, restore_rng  # noqa: E402
from trainer.training import Trainer  # noqa: E402

FAILED: list[str] = []


def emit(check: str, **fields) -> None:
    if fields.get("ok") is False:
        FAILED.append(check)
    print(json.dumps({"check": check, **fields}), flush=True)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def net_config(res: int, smoke: bool, bf16_min_res: int = 0) -> NetworkConfig:
    if smoke:
        return NetworkConfig(img_resolution=res, z_dim=32, w_dim=32, channel_base=256,
                             channel_max=32, bf16_min_res=bf16_min_res)  # fmt: skip
    pv = preset_values("auto", res, 1)
    return NetworkConfig(img_resolution=res, channel_base=pv["channel_base"],
                         channel_max=pv["channel_max"], mapping_layers=pv["mapping_layers"],
                         bf16_min_res=bf16_min_res)  # fmt: skip


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.detach().double().cpu(), b.detach().double().cpu()
    return float((a - b).abs().max() / b.abs().max().clamp(min=1e-12))


@torch.no_grad()
def check_agree(device: torch.device, smoke: bool) -> None:
    res = 16 if smoke else 256
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    torch.manual_seed(0)
    net = net_config(res, smoke)
    G, D = Generator(**net.generator_kwargs()).eval(), Discriminator(**net.discriminator_kwargs())
    z = torch.randn(4, net.z_dim)
    ref_img = G(z, noise_mode="const")
    ref_logits = D.eval()(ref_img)
    variants = [("fp32", 0, False), ("bf16", bf16_min_res(res), False)]  # bf16: CPU too
    if device.type == "cuda":
        variants += [("fp32_compile", 0, True)]
    for name, bf16_res, compiled in variants:
        g_kw = {**G.init_kwargs, "bf16_min_res": bf16_res}
        d_kw = {**D.init_kwargs, "bf16_min_res": bf16_res}
        Gd, Dd = Generator(**g_kw), Discriminator(**d_kw)
        Gd.load_state_dict(G.state_dict())
        Dd.load_state_dict(D.state_dict())
        Gd, Dd = Gd.to(device).eval(), Dd.to(device).eval()
        for net in (Gd, Dd):
            allow_cpu_bf16(net)  # what `train --bf16` does on a CPU; no effect on CUDA
        syn = torch.compile(Gd.synthesis) if compiled else Gd.synthesis
        dfn = torch.compile(Dd) if compiled else Dd
        img = syn(Gd.mapping(z.to(device)), noise_mode="const")
        logits = dfn(ref_img.to(device))
        tol = 5e-2 if name == "bf16" else 1e-3
        e_g, e_d = rel_err(img, ref_img), rel_err(logits, ref_logits)
        emit("agree", variant=name, res=res, g_rel_err=e_g, d_rel_err=e_d, tolerance=tol,
             ok=e_g <= tol and e_d <= tol)  # fmt: skip
    if device.type != "cuda":
        emit("agree", variant="compile", ok=True, skipped="compile runs on CUDA")
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True


def build_trainer(res, batch, device, smoke, bf16=False, channels_last=False, compiled=False):
    pv = preset_values("auto", res, 1, batch)
    net = net_config(res, smoke, bf16_min_res(res) if bf16 else 0)
    train = TrainConfig(batch=batch, lr=pv["lr"], ema_kimg=pv["ema_kimg"],
                        channels_last=channels_last, compile=compiled,
                        cpu_bf16=bf16)  # fmt: skip
    cfg = RunConfig(net, LossConfig(r1_gamma=pv["r1_gamma"]), AugmentConfig(mode="ada"), train)
    trainer = Trainer(cfg, synthetic_dataset(64, res).to(device), device)
    trainer.augment_pipe.p.fill_(0.2)  # ADA mid-way: the pipeline really runs
    return trainer


def _weights_diff(a: Trainer, b: Trainer) -> float:
    worst = 0.0
    for na, nb in ((a.G, b.G), (a.D, b.D), (a.G_ema, b.G_ema)):
        for (_, x), (_, y) in zip(na.state_dict().items(), nb.state_dict().items(), strict=True):
            worst = max(worst, float((x.double() - y.double()).abs().max()))
    return worst


def check_resume(device: torch.device, smoke: bool) -> None:
    res, batch, steps = (16, 4, 8) if smoke else (64, 8, 8)

    def straight() -> Trainer:
        t = build_trainer(res, batch, device, smoke)
        for _ in range(steps):
            t.step()
        return t

    a, b = straight(), straight()
    first = build_trainer(res, batch, device, smoke)
    for _ in range(steps // 2):
        first.step()
    state, rng = first.state_dict(), capture_rng()
    second = build_trainer(res, batch, device, smoke)
    second.load_state_dict(state)
    restore_rng(rng)
    for _ in range(steps - steps // 2):
        second.step()
    floor, diff = _weights_diff(a, b), _weights_diff(a, second)
    emit("resume", res=res, steps=steps, max_abs_diff=diff, straight_vs_straight=floor,
         ok=diff <= max(2 * floor, 0.0) or diff == 0.0)  # fmt: skip


def time_trainer(trainer: Trainer, device: torch.device, windows: int, warmup: int) -> dict:
    for _ in range(warmup):
        trainer.step()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    sync(device)
    t0 = time.perf_counter()
    for _ in range(windows * WINDOW):
        trainer.step()
    sync(device)
    images = windows * WINDOW * trainer.cfg.train.batch
    out = {"sec_per_kimg": round((time.perf_counter() - t0) / images * 1000, 3)}
    if device.type == "cuda":
        out["peak_mem_gb"] = round(torch.cuda.max_memory_allocated(device) / 2**30, 2)
    return out


def check_speed(device: torch.device, smoke: bool, deadline: float) -> None:
    targets = {256: 6.0, 512: 20.0}  # s/kimg on one H100 (issue 11)
    sizes = [(16, 4)] if smoke else [(256, 16), (512, 8)]
    modes = [("fp32", False, False, False)]
    if device.type == "cuda":
        modes += [("bf16_cl", True, True, False), ("bf16_cl_compile", True, True, True)]
    for res, batch in sizes:
        for name, bf16, cl, compiled in modes:
            if time.time() > deadline:
                emit("speed", res=res, mode=name, ok=False, skipped="time budget spent")
                continue
            trainer = build_trainer(res, batch, device, smoke, bf16, cl, compiled)
            got = time_trainer(trainer, device, 1, WINDOW if compiled else 3)
            target = targets.get(res)
            emit("speed", res=res, batch=batch, mode=name, target_sec_per_kimg=target,
                 ok=True if target is None or name == "fp32" else got["sec_per_kimg"] <= target,
                 **got)  # fmt: skip
            del trainer
            if device.type == "cuda":
                torch.cuda.empty_cache()


@torch.no_grad()
def check_fid(device: torch.device, smoke: bool) -> None:
    from scipy import linalg

    from trainer.metrics.estimate import random_inception
    from trainer.metrics.inputs import to_uint8

    res, num, batch = (16, 2, 2) if smoke else (256, 10000, 100)
    G = Generator(**net_config(res, smoke).generator_kwargs()).to(device).eval()
    fe = random_inception(device)
    sync(device)
    t0 = time.perf_counter()
    feats = []
    for _i in range(0, num, batch):
        img = to_uint8(G(torch.randn(batch, G.z_dim, device=device), noise_mode="const"))
        feats.append(fe(img.expand(-1, 3, -1, -1).contiguous())[0].double().cpu())
    f = torch.cat(feats).numpy()
    if smoke:  # 2 samples: keep the formula's cost tiny (the 2048^2 sqrtm takes seconds)
        f = np.concatenate([f[:, :8], f[:, :8] + np.random.default_rng(0).normal(size=(len(f), 8))])
    mu, sigma = f.mean(0), np.cov(f, rowvar=False)
    half = len(f) // 2  # stands in for the cached real statistics
    mu2, sigma2 = f[:half].mean(0), np.cov(f[:half], rowvar=False)
    with warnings.catch_warnings():  # a smoke run's 2 samples make singular covariances
        warnings.simplefilter("ignore")
        covmean = np.real(linalg.sqrtm(sigma @ sigma2))
    fid = float(((mu - mu2) ** 2).sum() + np.trace(sigma + sigma2 - 2 * covmean))
    seconds = time.perf_counter() - t0
    emit("fid10k", res=res, samples=num, seconds=round(seconds, 2), fid_random_weights=fid,
         target_seconds=None if smoke else 120, ok=smoke or seconds < 120)  # fmt: skip


def phantom_zip(path: str, res: int, n: int) -> str:
    """Abdomen-window slices of the app's CT phantom (falls back to the tests' ellipses)."""
    from tests.trainer.zipdata import phantom_images, write_zip

    try:
        from app.phantom.volume import make_phantom

        hu = make_phantom(seed=0, size=res, slices=n).hu.astype(np.float32)  # [x, y, z]
        imgs = np.clip((hu.transpose(2, 1, 0) - (50 - 200)) / 400, 0, 1)  # W400 L50
        source = "app.phantom"
    except Exception:  # the app's dependencies may be absent on a bare GPU machine
        imgs, source = phantom_images(n, res)[0], "test ellipses"
    return write_zip(path, imgs), source


def check_train(device: torch.device, smoke: bool, seconds: float, outdir: str) -> None:
    res = 16 if smoke else 128
    with tempfile.TemporaryDirectory(prefix="gpu_check") as tmp:
        data, source = phantom_zip(os.path.join(tmp, "phantom.zip"), res, 16 if smoke else 64)
        run = os.path.join(tmp, "run")
        cmd = [sys.executable, "-m", "trainer", "train", "--data", data, "--outdir", run,
               "--device", device.type, "--kimg", "100000", "--snap", "100000",
               "--tick", "0.016" if smoke else "1"]  # fmt: skip
        if smoke:
            cmd += ["--cbase", "256", "--cmax", "32", "--zdim", "32", "--batch", "4"]
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        log = os.path.join(run, "log.txt")
        t0 = time.time()
        stats = os.path.join(run, "stats.jsonl")  # wait for the first tick: training runs
        while time.time() - t0 < 300 and proc.poll() is None and not _read(stats):
            time.sleep(0.2)
        time.sleep(seconds)
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(timeout=120)
        stopped = [ln for ln in _read(log).splitlines() if "stop requested" in ln]
        kimg = float(stopped[-1].split("kimg ")[-1]) if stopped else None
        snaps = sorted(n for n in os.listdir(run) if n.startswith("snapshot-")) if kimg else []
        grid = snaps[-1].replace("snapshot-", "samples-").replace(".pt", ".png") if snaps else ""
        saved = None
        if grid and os.path.exists(os.path.join(run, grid)) and outdir:
            os.makedirs(outdir, exist_ok=True)
            saved = os.path.join(outdir, f"train{res}-{grid}")
            shutil.copy(os.path.join(run, grid), saved)
        if os.environ.get("GPU_CHECK_KEEP"):
            shutil.copytree(run, os.environ["GPU_CHECK_KEEP"], dirs_exist_ok=True)
        # 4: stopped by the SIGTERM above with its snapshot written (trainer/exit_record.py)
        err = proc.stderr.read().decode(errors="replace")[-300:] if rc != 4 else ""
        emit("train", res=res, seconds=seconds, data=source, rc=rc, kimg=kimg, grid=grid,
             saved=saved, ok=rc == 4 and bool(kimg) and bool(grid), stderr_tail=err)  # fmt: skip


def _read(path: str) -> str:
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return ""


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    p.add_argument("--smoke", action="store_true", help="tiny networks and sizes (seconds)")
    p.add_argument("--outdir", default="", help="where the training sample grid is copied")
    p.add_argument("--train-seconds", type=float, help="default 240 (smoke: 3)")
    p.add_argument("--budget", type=float, default=420, help="seconds before speed stops")
    p.add_argument("--only", default="agree,resume,speed,fid10k,train")
    args = p.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        emit("device", ok=False, error="CUDA is not available")
        return 1
    if args.smoke and device.type == "cpu":
        torch.set_num_threads(1)  # tiny networks: more threads only contend
    start = time.time()
    emit("device", ok=True, device=torch.cuda.get_device_name(device) if device.type == "cuda"
         else "cpu", torch=torch.__version__, smoke=args.smoke)  # fmt: skip
    train_s = args.train_seconds or (3 if args.smoke else 240)
    checks = {
        "agree": lambda: check_agree(device, args.smoke),
        "resume": lambda: check_resume(device, args.smoke),
        "speed": lambda: check_speed(device, args.smoke, start + args.budget - train_s),
        "fid10k": lambda: check_fid(device, args.smoke),
        "train": lambda: check_train(device, args.smoke, train_s, args.outdir),
    }
    for name in args.only.split(","):
        try:
            checks[name]()
        except Exception as e:
            emit(name, ok=False, error=f"{type(e).__name__}: {e}",
                 traceback=traceback.format_exc()[-800:])  # fmt: skip
    failed = sorted(set(FAILED))
    emit("done", ok=not failed, failed=failed, seconds=round(time.time() - start, 1))
    return 0 if not failed else 1


if __name__ == "__main__":
    sys.exit(main())
