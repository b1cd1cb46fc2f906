"""Two processes on the CPU with Gloo, launched by torchrun exactly as on a GPU cluster."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.trainer.helpers import REPO, TINY, load, trainer_env
from trainer.options import UsageError
from trainer.snapshot import find_latest


def test_two_gloo_processes_train_in_lockstep(tiny_zip, tmp_path):
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        "-m",
        "trainer",
        "train",
        "--data",
        tiny_zip,
        "--outdir",
        str(tmp_path),
        "--kimg",
        "0.064",
        "--tick",
        "0.032",
        "--snap",
        "1",
        "--ada-kimg",
        "0.5",
        *[a for a in TINY if a not in ("--batch", "4")],
        "--batch",
        "8",
    ]
    env = trainer_env()
    env.update(GLOO_SOCKET_IFNAME="lo", OMP_NUM_THREADS="1")
    out = subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    log = (tmp_path / "log.txt").read_text()
    assert "2 process(es)" in log
    # gradients, pl_mean, w_avg and ADA statistics are reduced, so the ranks never diverge
    checks = [line for line in log.splitlines() if "ddp check" in line]
    assert len(checks) == 2 and all(line.endswith("ranks 0") for line in checks)
    stats = [json.loads(s) for s in (tmp_path / "stats.jsonl").read_text().splitlines()]
    assert [s["kimg"] for s in stats] == [0.032, 0.064]  # rank 0 alone writes
    state = load(find_latest(str(tmp_path)))
    assert state["world_size"] == 2 and len(state["rng"]) == 2
    assert state["progress"]["cur_nimg"] == 64 and state["sampler"]["pos"] == 64


def test_batch_must_split_evenly_over_processes(tiny_zip):
    import argparse

    from trainer.dataset import load_dataset
    from trainer.options import config_from_args
    from trainer.parser import build_parser

    args = build_parser().parse_args(["train", "--outdir", "x", "--batch", "6"])
    assert isinstance(args, argparse.Namespace)
    with pytest.raises(UsageError, match="not divisible"):
        config_from_args(args, load_dataset(tiny_zip), world_size=4, cuda=False)
