"""`python -m trainer info`: the trainer answers what the app used to re-derive (real processes)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.app.job_helpers import write_zip

ROOT = Path(__file__).resolve().parents[2]


def info(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "trainer", "info", *args],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def test_defaults_follow_the_reference_auto_formulas():
    out = info("defaults", "--res", "64", "--res", "512")
    assert out.returncode == 0, out.stderr
    at64, at512 = json.loads(out.stdout)
    assert (at64["batch"], at64["gamma"], at64["cbase"], at64["cmax"]) == (32, 0.0256, 16384, 512)
    assert (at512["batch"], at512["cbase"]) == (8, 32768)
    assert at512["gamma"] == pytest.approx(0.0002 * 512**2 / 8)
    assert at64["zdim"] == 512 and at64["augpipe"] == "bgc"
    assert at64["macs_per_image"]["G"] < at512["macs_per_image"]["G"]
    assert at64["limits"]["zdim"][1] < 1e9


def test_defaults_with_a_batch_and_gpus():
    one = json.loads(info("defaults", "--res", "256", "--batch", "8").stdout)
    assert one["batch"] == 8 and one["gamma"] == pytest.approx(0.0002 * 256**2 / 8)
    four = json.loads(info("defaults", "--res", "64", "--gpus", "4").stdout)
    assert four["batch"] == 64 and four["world_size"] == 4


def test_a_bad_question_is_exit_2_with_one_line():
    bad = info("defaults", "--res", "48")
    assert bad.returncode == 2 and bad.stderr.startswith("error: --res 48")
    missing = info("snapshot", "/nonexistent/snapshot-000000.pt")
    assert missing.returncode == 2 and "not found" in missing.stderr


def test_resume_options_are_the_trainers_own():
    out = json.loads(info("resume-options").stdout)
    assert {"kimg", "snap", "device", "metrics_every"} <= set(out["flags"])
    assert "batch" not in out["flags"]


def test_snapshot_facts_of_a_real_run(tmp_path):
    data = tmp_path / "data.zip"
    write_zip(data, n=8)
    run = tmp_path / "run"
    argv = [sys.executable, "-m", "trainer", "train", "--data", str(data), "--outdir", str(run),
            "--res", "16", "--kimg", "0.008", "--tick", "0.008", "--batch", "4", "--cbase", "64",
            "--cmax", "16", "--zdim", "16", "--cond", "--device", "cpu"]  # fmt: skip
    assert subprocess.run(argv, cwd=ROOT, capture_output=True, timeout=300).returncode == 0
    snap = next(run.glob("snapshot-*.pt"))
    facts = json.loads(info("snapshot", str(snap)).stdout)
    assert facts["network"] == {
        "resolution": 16, "channels": 1, "c_dim": 2, "zdim": 16, "cbase": 64, "cmax": 16,
        "map": 2,
    }  # fmt: skip
    assert facts["kimg"] == 0.008 and facts["options"]["train"]["batch"] == 4
    assert facts["provenance"]["window"] == "liver"
    legacy = json.loads(info("--snapshot", str(snap)).stdout)
    assert legacy["kimg"] == 0.008 and legacy["generator"]["img_resolution"] == 16
