"""Mixed precision as the reference (its 4 highest resolutions in reduced precision), on a CPU
only when asked: `train --bf16` there runs those blocks in bf16, records it, keeps it on
resume, and what reads the snapshot afterwards (generate, metrics) stays fp32."""

from __future__ import annotations

import json
import os

import torch

from tests.trainer.helpers import TINY, load, run_trainer
from trainer.config import RunConfig, bf16_min_res, default_bf16_min_res
from trainer.info import cpu_bf16_units
from trainer.snapshot import build_network, find_latest


def test_the_reference_rule_four_highest_resolutions_never_below_8():
    assert [bf16_min_res(r) for r in (8, 16, 32, 64, 128, 256, 512, 1024)] == [
        8, 8, 8, 8, 16, 32, 64, 128,
    ]  # fmt: skip


def test_cuda_defaults_on_cpu_defaults_off_and_no_bf16_turns_it_off():
    assert default_bf16_min_res(256, None, cuda=True) == 32
    assert default_bf16_min_res(256, None, cuda=False) == 0  # CPU: fp32 unless asked
    assert default_bf16_min_res(256, True, cuda=False) == 32
    assert default_bf16_min_res(256, False, cuda=True) == 0


def test_cpu_bf16_units_answers_from_cpuinfo():
    assert cpu_bf16_units() in ("amx", "avx512_bf16", None)


def _train(data, outdir, *extra):
    out = run_trainer("train", "--data", data, "--outdir", str(outdir), *TINY,
                      "--tick", "0.032", "--snap", "1", *extra)  # fmt: skip
    assert out.returncode == 0, out.stderr + out.stdout
    return out


def test_train_bf16_on_a_cpu_runs_records_resumes_and_generation_stays_fp32(tiny_zip, tmp_path):
    _train(tiny_zip, tmp_path, "--kimg", "0.032", "--bf16")
    with open(os.path.join(tmp_path, "options.json")) as f:
        opts = json.load(f)
    assert opts["train"]["cpu_bf16"] is True
    assert opts["network"]["bf16_min_res"] == 8  # 16²: the 8² and 16² blocks
    state = load(find_latest(str(tmp_path)))
    stats = [json.loads(line) for line in open(os.path.join(tmp_path, "stats.jsonl"))]
    assert stats and all(
        v is None or v == v for s in stats for v in s.values() if isinstance(v, float)
    )  # no NaN anywhere
    # Resume keeps the precision (it is part of the run, not a per-launch switch).
    _train(tiny_zip, tmp_path, "--kimg", "0.064", "--resume", "latest")
    resumed = load(find_latest(str(tmp_path)))
    assert RunConfig.from_dict(resumed["options"]).train.cpu_bf16 is True
    assert resumed["progress"]["cur_nimg"] == 64
    # A network rebuilt from the snapshot (generate, metrics) runs fp32 on the CPU: its
    # output equals that of the same weights built without any bf16 block.
    G = build_network(state["G_ema"], "G")
    fp32 = build_network({**state["G_ema"], "init_kwargs": {
        **state["G_ema"]["init_kwargs"], "bf16_min_res": 0}}, "G")  # fmt: skip
    z = torch.randn(2, G.z_dim)
    torch.testing.assert_close(G(z, noise_mode="const"), fp32(z, noise_mode="const"))


def test_cpu_runs_stay_fp32_by_default(tiny_run):
    with open(os.path.join(tiny_run, "options.json")) as f:
        opts = json.load(f)
    assert opts["network"]["bf16_min_res"] == 0 and opts["train"]["cpu_bf16"] is False
