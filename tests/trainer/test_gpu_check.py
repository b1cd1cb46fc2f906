"""bench/gpu_check.py cannot rot: its CPU smoke run passes every check in well under a minute."""

import json
import os
import subprocess
import sys

from tests.trainer.helpers import REPO, trainer_env


def test_gpu_check_smoke_on_cpu_prints_one_passing_json_line_per_figure(tmp_path):
    out = tmp_path / "out"
    done = subprocess.run(
        [sys.executable, "bench/gpu_check.py", "--device", "cpu", "--smoke", "--outdir", str(out)],
        cwd=REPO,
        env=trainer_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    assert done.returncode == 0, done.stdout + done.stderr[-2000:]
    checks = {line["check"] for line in lines}
    assert {"device", "agree", "resume", "speed", "fid10k", "train", "done"} <= checks
    assert all(line["ok"] for line in lines), lines
    assert lines[-1]["check"] == "done" and lines[-1]["seconds"] < 60
    train = next(line for line in lines if line["check"] == "train")
    assert os.path.isfile(train["saved"])
