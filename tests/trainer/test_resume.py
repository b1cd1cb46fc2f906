"""Exact resume: a run stopped (at a kimg limit or by SIGTERM) and resumed ends where an
uninterrupted run ends; fine-tuning and resume errors."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time

import pytest

from tests.trainer.helpers import (
    REPO,
    TINY,
    load,
    max_weight_diff,
    run_trainer,
    trainer_cmd,
    trainer_env,
)
from tests.trainer.zipdata import phantom_zip
from trainer.snapshot import find_latest

# ADA moves fast here so the augmentation (and its RNG use) is really exercised.
COMMON = [
    *TINY,
    "--tick",
    "0.032",
    "--snap",
    "3",
    "--ada-kimg",
    "0.5",
    "--seed",
    "7",
    "--mirror",
    "--cond",
]
TOTAL = "0.192"


def _train(data: str, outdir, *extra: str) -> None:
    out = run_trainer("train", "--data", data, "--outdir", str(outdir), *COMMON, *extra)
    assert out.returncode == 0, out.stderr + out.stdout


@pytest.fixture(scope="module")
def straight(tmp_path_factory, tiny_zip) -> dict:
    run = tmp_path_factory.mktemp("straight")
    _train(tiny_zip, run, "--kimg", TOTAL)
    return load(find_latest(str(run)))


def _assert_same_run(a: dict, b: dict) -> None:
    assert a["progress"]["cur_nimg"] == b["progress"]["cur_nimg"] == 192
    assert max_weight_diff(a, b) <= 1e-6
    assert a["augment"]["p"] == b["augment"]["p"] > 0
    assert a["pl_mean"].item() == b["pl_mean"].item()
    assert a["sampler"] == b["sampler"]
    for k, v in a["opt_D"]["state"].items():
        assert (v["exp_avg_sq"] - b["opt_D"]["state"][k]["exp_avg_sq"]).abs().max() <= 1e-6


def test_resume_after_a_kimg_limit_matches_the_uninterrupted_run(straight, tiny_zip, tmp_path):
    _train(tiny_zip, tmp_path, "--kimg", "0.1")  # stops mid-tick, at minibatch 25
    assert load(find_latest(str(tmp_path)))["progress"]["cur_nimg"] == 100
    _train(tiny_zip, tmp_path, "--kimg", TOTAL, "--resume", "latest")
    _assert_same_run(straight, load(find_latest(str(tmp_path))))
    last = json.loads((tmp_path / "stats.jsonl").read_text().splitlines()[-1])
    assert last["kimg"] == 0.192 and last["total_kimg"] == 0.192


def test_sigterm_writes_a_snapshot_exits_4_and_resume_is_exact(straight, tiny_zip, tmp_path):
    args = ["train", "--data", tiny_zip, "--outdir", str(tmp_path), *COMMON, "--kimg", "100"]
    proc = subprocess.Popen(
        trainer_cmd(*args),
        env=trainer_env(),
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    stats = tmp_path / "stats.jsonl"
    deadline = time.monotonic() + 120
    while not (stats.exists() and stats.read_text().count("\n") >= 1):
        assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read()
        time.sleep(0.02)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=120) == 4, proc.stderr.read()  # stopped, resumable
    assert "stop requested (SIGTERM)" in (tmp_path / "log.txt").read_text()
    record = json.loads((tmp_path / "exit.json").read_text())
    assert record["code"] == 4 and record["reason"] == "stopped" and record["signal"] == "SIGTERM"
    stopped = load(find_latest(str(tmp_path)))["progress"]["cur_nimg"]
    assert 32 <= stopped < 192, "the run must stop well before the end to test anything"
    _train(tiny_zip, tmp_path, "--kimg", TOTAL, "--resume", "latest")
    _assert_same_run(straight, load(find_latest(str(tmp_path))))


def test_resume_latest_without_snapshot_is_a_usage_error(tiny_zip, tmp_path):
    from trainer.cli import main

    rc = main(["train", "--data", tiny_zip, "--outdir", str(tmp_path), "--resume", "latest", *TINY])
    assert rc == 2
    assert "no snapshot" in (tmp_path / "log.txt").read_text()


def test_finetune_from_another_run_starts_a_new_count(tiny_run, tiny_zip, tmp_path, one_thread):
    from trainer.cli import main

    src = find_latest(tiny_run)
    rc = main(
        [
            "train",
            "--data",
            tiny_zip,
            "--outdir",
            str(tmp_path),
            "--resume",
            src,
            "--kimg",
            "0.016",
            "--tick",
            "0.016",
            "--zdim",
            "32",
            "--device",
            "cpu",
            "--batch",
            "4",
        ]
    )  # channel flags are taken from the snapshot
    assert rc == 0
    state = load(find_latest(str(tmp_path)))
    assert state["progress"]["cur_nimg"] == 16
    assert state["G"]["init_kwargs"] == load(src)["G"]["init_kwargs"]
    assert "fine-tuning" in (tmp_path / "log.txt").read_text()


def test_finetune_with_another_resolution_is_refused(tiny_run, tmp_path):
    from trainer.cli import main

    data = phantom_zip(tmp_path / "d32.zip", n=4, res=32)
    rc = main(
        [
            "train",
            "--data",
            data,
            "--outdir",
            str(tmp_path / "run"),
            "--resume",
            find_latest(tiny_run),
            *TINY,
        ]
    )
    assert rc == 2
    assert "cannot fine-tune" in (tmp_path / "run" / "log.txt").read_text()


def test_resume_ignores_options_that_would_change_the_run(tiny_run, tmp_path, one_thread):
    from trainer.cli import main

    run = tmp_path / "copy"
    os.makedirs(run)
    src = find_latest(tiny_run)
    shutil.copy(src, run / os.path.basename(src))
    rc = main(
        ["train", "--outdir", str(run), "--resume", "latest", "--gamma", "5", "--kimg", "0.072"]
    )
    assert rc == 0
    log = (run / "log.txt").read_text()
    assert "ignored --gamma" in log
    state = load(find_latest(str(run)))
    assert state["options"]["loss"]["r1_gamma"] != 5 and state["progress"]["cur_nimg"] == 72
    fresh = main(
        ["train", "--data", state["options"]["train"]["data"], "--outdir", str(run), *TINY]
    )
    assert fresh == 2 and "already holds a run" in (run / "log.txt").read_text()
