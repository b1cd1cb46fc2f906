"""FID/KID during training (--metrics-every): values in the stats lines of snapshot ticks, the
same weights as a run without them, missing weights logged once, cancellable measurements."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.trainer.helpers import REPO, TINY, load, max_weight_diff, trainer_env
from tests.trainer.metrics_support import (
    register_tiny_extractor,
    smooth_images,
    tiny_generator,
    write_zip,
)
from trainer.cli import main
from trainer.snapshot import find_latest

MODULE = "tests.trainer.metrics_support:register_tiny_extractor"
TINY_METRICS = ["--metrics-num", "16", "--metrics-extractor-module", MODULE]
KEYS = ("fid", "fid_relative", "kid_mean", "kid_std", "metrics_seconds")


@pytest.fixture
def torch_home(tmp_path, monkeypatch):
    """An empty torch hub cache: no Inception weights, and the feature cache stays in tmp."""
    home = tmp_path / "torch-home"
    monkeypatch.setenv("TORCH_HOME", str(home))
    return home


def _train(data: str, run_dir, kimg: str, *extra: str) -> None:
    args = ["train", "--data", data, "--outdir", str(run_dir), "--kimg", kimg, "--tick", "0.032"]
    assert main([*args, "--snap", "1", *TINY, *extra]) == 0


def _stats(run_dir) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "stats.jsonl").read_text().splitlines()]


def test_metrics_land_in_the_stats_lines_of_every_nth_and_the_last_snapshot(
    tiny_zip, tmp_path, torch_home, one_thread
):
    _train(tiny_zip, tmp_path, "0.096", "--metrics-every", "2", *TINY_METRICS)
    rows = _stats(tmp_path)
    assert [r["tick"] for r in rows] == [1, 2, 3]
    assert [("fid" in r) for r in rows] == [False, True, True]  # tick 2, then the last
    for row in rows[1:]:
        assert all(isinstance(row[k], float) for k in KEYS) and row["fid"] > 0
        assert row["metrics_num"] == 16 and row["metrics_extractor"] == "medsynth-test-tiny"
        assert row["loss_G"] is not None  # the tick's own line, not an extra one
    assert (tmp_path / "log.txt").read_text().count("metrics at kimg") == 2


def test_resume_keeps_the_metric_options_and_lets_every_change(
    tiny_zip, tmp_path, torch_home, one_thread
):
    _train(tiny_zip, tmp_path, "0.064", "--metrics-every", "1", *TINY_METRICS)
    _train(tiny_zip, tmp_path, "0.096", "--resume", "latest", "--metrics-every", "0")
    assert [("fid" in r) for r in _stats(tmp_path)] == [True, True, False]
    train = json.loads((tmp_path / "options.json").read_text())["train"]
    assert train["metrics_every"] == 0 and train["metrics_num"] == 16
    assert train["metrics_extractor_module"] == MODULE
    assert load(find_latest(str(tmp_path)))["options"]["train"]["metrics_every"] == 0


def test_a_run_with_metrics_ends_with_the_same_weights(
    tiny_run, tiny_zip, tmp_path, torch_home, one_thread
):
    # the tiny_run fixture's arguments, plus metrics at both of its snapshots
    _train(tiny_zip, tmp_path, "0.064", "--metrics-every", "1", *TINY_METRICS)
    assert all("fid" in r for r in _stats(tmp_path))
    plain = load(find_latest(tiny_run))
    assert max_weight_diff(plain, load(find_latest(str(tmp_path)))) == 0
    losses = [(r["loss_G"], r["loss_D"], r["augment_p"]) for r in _stats(tmp_path)]
    assert losses == [(r["loss_G"], r["loss_D"], r["augment_p"]) for r in _stats(Path(tiny_run))]


def test_missing_weights_are_logged_once_and_training_goes_on(
    tiny_zip, tmp_path, torch_home, one_thread
):
    _train(tiny_zip, tmp_path, "0.064", "--metrics-every", "1", "--metrics-num", "16")
    assert not any("fid" in r for r in _stats(tmp_path)) and len(_stats(tmp_path)) == 2
    log = (tmp_path / "log.txt").read_text()
    folder = os.path.join(str(torch_home), "hub", "checkpoints")
    assert log.count("metrics: off for the rest of this run") == 1
    assert "weights-inception-2015-12-05-6726825d.pth" in log and "6726825d" in log
    assert folder in log and "done: 0.064 kimg" in log


def test_an_extractor_module_that_does_not_import_is_a_usage_error(tiny_zip, tmp_path):
    args = ["train", "--data", tiny_zip, "--outdir", str(tmp_path), *TINY]
    assert main([*args, "--metrics-every", "1", "--metrics-extractor-module", "no_such_mod:f"]) == 2
    assert "--metrics-extractor-module no_such_mod:f" in (tmp_path / "log.txt").read_text()
    assert find_latest(str(tmp_path)) is None


def test_quick_fid_kid_leaves_the_global_rngs_alone(tmp_path, torch_home):
    import torch

    from trainer.metrics import quick_fid_kid
    from trainer.snapshot import capture_rng, seed_all

    data = write_zip(tmp_path / "d.zip", smooth_images(12, seed=1))
    G, extractor = tiny_generator(), register_tiny_extractor()
    seed_all(5)
    before = capture_rng()
    quick_fid_kid(G, data, 12, feature_extractor=extractor, kid_subsets=3)
    after = capture_rng()
    assert torch.equal(before["torch"], after["torch"])
    assert before["numpy"] == after["numpy"] and before["python"] == after["python"]


def test_a_stop_request_cuts_a_measurement_short(tmp_path, torch_home, monkeypatch):
    import trainer.metrics
    from trainer.config import TrainConfig
    from trainer.loop import StopFlag
    from trainer.periodic_metrics import PeriodicMetrics
    from trainer.stats import RunLog

    def slow(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(30)  # interrupted by the handler
        raise AssertionError("not cut short")

    monkeypatch.setattr(trainer.metrics, "quick_fid_kid", slow)
    cfg = TrainConfig(batch=4, metrics_every=1, metrics_extractor_module=MODULE)
    log = RunLog(str(tmp_path), echo=False)
    with StopFlag() as stop:
        metrics = PeriodicMetrics(cfg, log, is_main=True)
        t0 = time.monotonic()
        assert metrics.measure(None, None, None, 0.5) == {}
        assert time.monotonic() - t0 < 10 and stop.requested and metrics.enabled
    log.close()
    assert (
        "metrics at kimg 0.500: cut short by a stop request" in (tmp_path / "log.txt").read_text()
    )


def test_under_torchrun_rank_0_measures_while_the_other_waits(tiny_zip, tmp_path, torch_home):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "trainer", "train", "--data", tiny_zip, "--outdir", str(tmp_path), "--kimg",
           "0.064", "--tick", "0.032", "--snap", "1", "--metrics-every", "1", *TINY_METRICS,
           *[a for a in TINY if a not in ("--batch", "4")], "--batch", "8"]  # fmt: skip
    env = trainer_env() | {"GLOO_SOCKET_IFNAME": "lo", "TORCH_HOME": str(torch_home)}
    out = subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert [("fid" in r) for r in _stats(tmp_path)] == [True, True]
    log = (tmp_path / "log.txt").read_text()
    assert log.count("max parameter difference between ranks 0") == 2  # still in lockstep
