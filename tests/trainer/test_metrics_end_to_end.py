"""The whole metrics run on a tiny generator and zip, with a registered tiny extractor."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from tests.trainer.metrics_support import (
    TinyExtractor,
    register_tiny_extractor,
    smooth_images,
    tiny_generator,
    write_snapshot,
    write_zip,
)
from tests.trainer.test_metrics_formulas import _frechet
from trainer.dataset import load_dataset
from trainer.metrics import compute_metrics, main, quick_fid_kid
from trainer.metrics.inputs import generate_samples, real_uint8

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FAST = dict(c2st_epochs=2, kid_subsets=20, estimate=False)


@pytest.fixture
def files(tmp_path):
    real = smooth_images(40, seed=1)
    data = write_zip(tmp_path / "data.zip", real, labels=[i % 2 for i in range(40)])
    snap = write_snapshot(tmp_path / "snap.pt", tiny_generator())
    return snap, data, real, tmp_path


def test_fid_kid_pr_relative_fd_memorization_c2st(files):
    snap, data, real, tmp = files
    name = register_tiny_extractor()
    out = compute_metrics(
        snap,
        data,
        metrics="fid,kid,pr,memorization,c2st",
        num=48,
        feature_extractor=name,
        cache_root=str(tmp / "cache"),
        **FAST,
    )
    m = out["metrics"]
    assert set(m) == {"fid", "kid", "pr", "memorization", "c2st"}
    assert m["fid"]["value"] > 0 and m["fid"]["real_halves"] > 0
    assert m["fid"]["relative"] == pytest.approx(m["fid"]["value"] / m["fid"]["real_halves"])
    assert m["kid"]["subset_size"] == 40 and np.isfinite(m["kid"]["mean"])
    assert 0 <= m["pr"]["precision"] <= 1 and 0 <= m["pr"]["recall"] <= 1 and m["pr"]["k"] == 3
    assert len(m["memorization"]["per_sample"]["ncc"]) == 48
    assert 0 <= m["c2st"]["ci95"][0] <= m["c2st"]["accuracy"] <= m["c2st"]["ci95"][1] <= 1
    assert out["environment"]["torch_fidelity"] and out["options"]["num"] == 48
    assert not [f for f in os.listdir(tmp / "cache") if f.startswith("medsynth-gen-")]
    # The FID equals a direct Fréchet distance of the same extractor's features.
    G = tiny_generator()
    gen = generate_samples(G, 48, labels=np.array([0, 1])).images
    fe = TinyExtractor(name, ["feat"])
    feats = [fe(torch.from_numpy(x).expand(-1, 3, -1, -1))[0].double().numpy() for x in (gen, real)]
    assert m["fid"]["value"] == pytest.approx(_frechet(*feats), rel=1e-4)


def test_cli_prints_one_json_object(files, capsys):
    snap, data, _, tmp = files
    name = register_tiny_extractor()
    out_file = tmp / "metrics.json"
    code = main(
        [
            "--snapshot",
            snap,
            "--data",
            data,
            "--metrics",
            "fid,kid,memorization",
            "--num",
            "24",
            "--feature-extractor",
            name,
            "--kid-subsets",
            "5",
            "--device",
            "cpu",
            "--cache-root",
            str(tmp / "cache"),
            "--out",
            str(out_file),
            "--no-per-sample",
            "--no-estimate",
        ]
    )
    captured = capsys.readouterr()
    assert code == 0, captured.err
    lines = captured.out.strip().splitlines()
    assert len(lines) == 1
    result = json.loads(lines[0])
    assert (
        result["metrics"]["fid"]["value"] > 0
        and "per_sample" not in result["metrics"]["memorization"]
    )
    assert json.loads(out_file.read_text()) == result
    assert "generate" in captured.err


def test_trainer_cli_runs_metrics_offline_in_a_subprocess(files):
    snap, data, _, tmp = files
    env = dict(os.environ, TORCH_HOME=str(tmp / "empty-torch-home"))
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "trainer",
            "metrics",
            "--snapshot",
            snap,
            "--data",
            data,
            "--metrics",
            "c2st",
            "--num",
            "20",
            "--c2st-epochs",
            "1",
            "--device",
            "cpu",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert list(result["metrics"]) == ["c2st"] and "estimate on cpu" in proc.stderr


def test_quick_fid_kid_for_the_training_loop(files):
    _, data, _, tmp = files
    ds = load_dataset(data)
    G = tiny_generator(c_dim=2)  # conditional: classes drawn from the dataset's labels
    out = quick_fid_kid(G, ds, 32, "cpu", register_tiny_extractor(), kid_subsets=5)
    assert out["fid"] > 0 and np.isfinite(out["kid_mean"]) and out["num"] == 32


def test_16_bit_pixels_map_to_8_bit_like_the_generator_range(tmp_path):
    values = np.array([0, 257, 32768, 65535], dtype=np.uint16).reshape(1, 1, 2, 2)
    ds = load_dataset(
        write_zip(tmp_path / "d16.zip", np.repeat(values, 2, 0).repeat(2, 2).repeat(2, 3), bits=16)
    )
    assert real_uint8(ds.images, ds.bits)[0, 0, ::2, ::2].tolist() == [[0, 1], [128, 255]]


def test_metrics_leave_the_global_rng_alone(files):
    """The training loop's RNG stream must not change when it computes FID."""
    _, data, _, _ = files
    torch.manual_seed(0)
    before = torch.get_rng_state()
    quick_fid_kid(tiny_generator(), data, 16, "cpu", register_tiny_extractor(), kid_subsets=2)
    assert torch.equal(before, torch.get_rng_state())
