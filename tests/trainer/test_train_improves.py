"""A tiny 16x16 run on phantom slices learns: losses stay sane and samples move toward reals."""

from __future__ import annotations

import json
import math
import shutil

import pytest
import torch

from tests.trainer.conftest import single_thread
from tests.trainer.helpers import run_trainer
from tests.trainer.zipdata import phantom_zip
from trainer.dataset import load_dataset
from trainer.generate import synthesize
from trainer.snapshot import find_latest, load_generator

NET = [
    "--cbase",
    "1024",
    "--cmax",
    "64",
    "--zdim",
    "64",
    "--batch",
    "8",
    "--device",
    "cpu",
    "--mirror",
    "--seed",
    "1",
    "--tick",
    "0.128",
    "--snap",
    "100",
    "--ada-kimg",
    "5",
]


def distances(G: torch.nn.Module, real: torch.Tensor, n: int = 64) -> dict[str, float]:
    """Cheap quality proxies: RMS distance of the mean images, and a 1-D Wasserstein
    distance between the pixel-value distributions (101 quantiles)."""
    fake = synthesize(G, list(range(n)))[:, 0].clamp(-1, 1)  # [n, R, R]
    q = torch.linspace(0, 1, 101)
    return {
        "mean_image": (fake.mean(0) - real.mean(0)).square().mean().sqrt().item(),
        "histogram": (fake.flatten().quantile(q) - real.flatten().quantile(q)).abs().mean().item(),
    }


@pytest.mark.parametrize("precision", [[], ["--bf16"]], ids=["fp32", "cpu-bf16"])
def test_tiny_phantom_run_improves_samples(tmp_path, precision):
    """fp32, and the reference's mixed precision on the CPU (bf16 on the 8² and 16² blocks),
    which must learn as well."""
    from trainer.cli import main

    data = phantom_zip(tmp_path / "phantom.zip", n=64, res=16, seed=3)
    run = tmp_path / "run"
    with single_thread():  # kimg 0: only the initial snapshot, to measure the untrained G_ema
        assert (
            main(["train", "--data", data, "--outdir", str(run), "--kimg", "0", *NET, *precision])
            == 0
        )
    shutil.copy(run / "snapshot-000000.pt", tmp_path / "initial.pt")
    out = run_trainer(
        "train",
        "--data",
        data,
        "--outdir",
        str(run),
        "--resume",
        "latest",
        "--kimg",
        "0.512",
        timeout=300,
    )
    assert out.returncode == 0, out.stderr

    options = json.loads((run / "options.json").read_text())
    assert options["train"]["cpu_bf16"] is bool(precision)
    stats = [json.loads(s) for s in (run / "stats.jsonl").read_text().splitlines()]
    assert [s["kimg"] for s in stats] == [0.128, 0.256, 0.384, 0.512]
    for s in stats:
        assert all(math.isfinite(s[k]) and 0 < s[k] < 10 for k in ("loss_G", "loss_D"))
    assert stats[-1]["score_real"] > stats[-1]["score_fake"]  # D tells them apart...
    assert stats[-1]["augment_p"] > 0  # ...so ADA starts augmenting

    real = load_dataset(data).get_images(torch.arange(64))[:, 0]
    with single_thread():
        before = distances(load_generator(str(tmp_path / "initial.pt")), real)
        after = distances(load_generator(find_latest(str(run))), real)
    for k in before:
        assert after[k] < 0.6 * before[k], (k, before, after)
