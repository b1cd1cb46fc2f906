"""Every command line the app gives the trainer, built in one place.

One new trainer flag is one change here (and, when a user sets it, in the job form's model).
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]  # where `python -m trainer` is importable


def python_for(configured: str) -> str:
    return configured or sys.executable


def _arg(v: float) -> str:
    return str(int(v)) if float(v).is_integer() else repr(float(v))


def train_argv(
    python: str, o: Mapping[str, Any], run_dir: str, total_kimg: float, resume: str | None
) -> list[str]:
    """One launch of a job from its validated options (`o`, the job row's options).

    `--resume latest` continues with the run's own options; only kimg, snap, device and the
    metrics options may change (`info resume-options`), so nothing else is passed.
    """
    gpus = int(o.get("gpus") or 0)
    device = ["--device", "cuda" if gpus > 0 else "cpu"]
    every = o.get("metrics_every") or 0  # FID/KID every N snapshots; 0 = off
    metrics = ["--metrics-every", str(every)] if every else []
    # One process; the executor adds torchrun for several GPUs or nodes (executor.py).
    argv = [python, "-m", "trainer", "train", "--data", o["data"], "--outdir", run_dir]
    if resume == "latest":
        kimg = ["--kimg", _arg(total_kimg), "--snap", str(o["snap"])]
        return argv + ["--resume", "latest"] + kimg + metrics + device
    argv += ["--res", str(o["resolution"]), "--kimg", _arg(o["kimg"])]
    argv += ["--batch", str(o["batch"]), "--gamma", _arg(o["gamma"]), "--aug", o["aug"]]
    if o["aug"] == "ada":
        argv += ["--target", _arg(o["target"])]
    if o.get("augpipe") and o["aug"] != "noaug":
        argv += ["--augpipe", o["augpipe"]]
    precision = o.get("precision")  # None: the trainer's default (bf16 on CUDA, fp32 on a CPU)
    argv += {"bf16": ["--bf16"], "fp32": ["--no-bf16"]}.get(precision or "", [])
    argv += ["--mirror"] if o["mirror"] else []
    argv += ["--cond"] if o["cond"] else []
    argv += ["--snap", str(o["snap"]), "--seed", str(o["seed"])]
    for key in ("tick", "cbase", "cmax", "zdim"):
        if o.get(key) is not None:
            argv += [f"--{key}", _arg(o[key])]
    argv += metrics + device
    if resume:
        argv += ["--resume", resume]
    return argv


def generate_argv(
    python: str,
    snapshot: str,
    seeds: str,
    outdir: str,
    trunc: float = 1.0,
    class_idx: int | None = None,
    fmt: str = "png",
    device: str = "cpu",
) -> list[str]:
    argv = [python, "-m", "trainer", "generate", "--snapshot", snapshot, "--seeds", seeds,
            "--trunc", repr(float(trunc)), "--outdir", outdir, "--format", fmt,
            "--device", device]  # fmt: skip
    return argv + (["--class", str(class_idx)] if class_idx is not None else [])


def metrics_argv(
    python: str,
    snapshot: str,
    o: Mapping[str, Any],
    metrics: Sequence[str],
    run_dir: str,
    result_file: str,
    advanced: Sequence[str] = (),
    extractor_module: str = "",
    feature_extractor: str = "",
    nice: int = 0,
) -> list[str]:
    """A metric run; its run folder is an argument, so the follower recognises the process."""
    argv = [python, "-m", "trainer", "metrics", "--snapshot", snapshot, "--data", o["data"],
            "--metrics", ",".join(metrics), "--num", str(o["num"]),
            "--device", o["device"]]  # fmt: skip
    for key in advanced:
        if o.get(key) is not None:
            argv += [f"--{key.replace('_', '-')}", str(o[key])]
    argv += ["--workdir", run_dir, "--out", str(Path(run_dir) / result_file), "--progress-json"]
    if extractor_module:
        argv += ["--extractor-module", extractor_module]
    if feature_extractor:
        argv += ["--feature-extractor", feature_extractor]
    if nice > 0:
        argv = ["nice", "-n", str(nice), *argv]  # nice execs: the pid stays the same
    return argv


def import_pkl_argv(python: str, pkl: str, out: str, channels: int | None = 1) -> list[str]:
    """A published StyleGAN2-ADA .pkl to a snapshot, read without running code from it."""
    argv = [python, "-m", "trainer", "import-pkl", pkl, "--out", out]
    return argv + (["--channels", str(channels)] if channels else [])


def info_argv(python: str, *question: str) -> list[str]:
    """`info defaults --res N ...`, `info snapshot FILE`, `info resume-options`.

    Run as `python -m trainer.info`, the same command as `python -m trainer info` without the
    training imports (torch): a form's defaults answer in a fraction of a second."""
    return [python, "-m", "trainer.info", *question]


def utility_argv(python: str, command: str, *args: str, **flags: Any) -> list[str]:
    """`python -m trainer utility COMMAND ARGS --flag value ...` (issue 13's runs).

    A flag whose value is True is passed bare, False or None is left out."""
    argv = [python, "-m", "trainer", "utility", command, *args]
    for key, value in flags.items():
        flag = "--" + key.replace("_", "-")
        if value is True:
            argv.append(flag)
        elif value is not None and value is not False:
            argv += [flag, _arg(value) if isinstance(value, float) else str(value)]
    return argv
