"""Running the trainer in tests: tiny network flags, subprocess runs, snapshot comparison."""

from __future__ import annotations

import os
import subprocess
import sys

import torch

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# Tiny networks: a 16x16 run takes ~15 ms per minibatch on one core.
TINY = ["--cbase", "256", "--cmax", "32", "--zdim", "32", "--batch", "4", "--device", "cpu"]


def trainer_env() -> dict[str, str]:
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    env["PYTHONPATH"] = REPO + os.pathsep + env.get("PYTHONPATH", "")
    return env


def trainer_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "trainer", *args]


def run_trainer(*args: str, timeout: float = 180) -> subprocess.CompletedProcess:
    """`python -m trainer ARGS` on one thread; returns the finished process (text output)."""
    return subprocess.run(
        trainer_cmd(*args),
        env=trainer_env(),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def load(path: str) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


def max_weight_diff(a: dict, b: dict) -> float:
    """Largest absolute difference over every tensor of G, D and G_ema."""
    worst = 0.0
    for net in ("G", "D", "G_ema"):
        sa, sb = a[net]["state_dict"], b[net]["state_dict"]
        assert sa.keys() == sb.keys()
        for k in sa:
            worst = max(worst, (sa[k].double() - sb[k].double()).abs().max().item())
    return worst
