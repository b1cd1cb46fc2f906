"""Stopping a multi-process (torchrun) run: a cancel ends it cleanly, a kill leaves nothing."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from app.trainer_client.processes import descendants as _descendants
from app.trainer_client.processes import kill_tree, request_stop
from tests.trainer.helpers import REPO, TINY, trainer_env
from tests.trainer.zipdata import phantom_zip
from trainer.snapshot import find_latest


def _start_torchrun(tmp_path: Path) -> tuple[subprocess.Popen, Path]:
    """Two Gloo workers on the CPU, started as the app starts a job; returns once training."""
    data = phantom_zip(tmp_path / "tiny.zip", n=16, res=16)
    run = tmp_path / "run"
    tiny = [a for a in TINY if a not in ("--batch", "4")]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           "-m", "trainer", "train", "--data", data, "--outdir", str(run), "--kimg", "1000",
           "--tick", "0.016", "--snap", "1000", *tiny, "--batch", "8"]  # fmt: skip
    env = trainer_env()
    env.update(GLOO_SOCKET_IFNAME="lo")
    out = {"stdout": subprocess.DEVNULL, "stderr": subprocess.PIPE, "text": True}
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, start_new_session=True, **out)
    deadline = time.monotonic() + 120
    while not (run / "stats.jsonl").exists():  # a tick done: both workers are training
        assert proc.poll() is None, proc.stderr.read()[-2000:]
        assert time.monotonic() < deadline, "the run did not reach its first tick"
        time.sleep(0.2)
    return proc, run


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


def test_stop_under_torchrun_signals_the_workers_and_everything_exits_0(tmp_path):
    proc, run = _start_torchrun(tmp_path)
    try:
        assert request_stop(proc.pid)
        code = proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            kill_tree(proc.pid)
    assert code == 0, proc.stderr.read()[-2000:]  # torchrun's: the workers' stop is no failure
    assert "stop requested" in (run / "log.txt").read_text()
    assert json.loads((run / "exit.json").read_text())["reason"] == "stopped"
    assert find_latest(str(run)) is not None


def test_kill_tree_leaves_no_torchrun_worker_behind(tmp_path):
    proc, _ = _start_torchrun(tmp_path)
    workers = _descendants(proc.pid)
    assert len(workers) >= 2
    kill_tree(proc.pid)
    proc.wait(timeout=30)
    deadline = time.monotonic() + 10
    while any(_alive(w) for w in workers):
        assert time.monotonic() < deadline, "a worker survived SIGKILL of the tree"
        time.sleep(0.1)
