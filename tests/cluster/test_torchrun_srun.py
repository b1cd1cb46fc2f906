"""Two Gloo processes on the CPU under `srun torchrun`, as the app submits a multi-GPU job:
the job trains to the end, and a job cancelled part-way (SIGTERM) and resumed with
`--resume latest` in a second job ends bit-identical to the uncut one."""

from __future__ import annotations

import os
import socket
import sys
import time

import pytest

from tests.trainer.helpers import REPO, TINY, load
from tests.trainer.zipdata import phantom_zip
from trainer.snapshot import find_latest

TOTAL = "0.256"  # 32 minibatches of 8: seconds on a CPU
OPTIONS = [*[a for a in TINY if a not in ("--batch", "4")], "--batch", "8", "--tick", "0.032",
           "--snap", "1", "--ada-kimg", "0.5", "--seed", "7", "--mirror"]  # fmt: skip


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def batch_script(run_dir, *trainer_args: str) -> str:
    """Written into the run directory, as the app does; `exec` so signals reach srun."""
    script = f"""#!/bin/bash
#SBATCH --nodes=1
#SBATCH --ntasks-per-node=1
#SBATCH --cpus-per-task=2
#SBATCH --output={run_dir}/slurm-%j.out
export GLOO_SOCKET_IFNAME=lo OMP_NUM_THREADS=1 PYTHONUNBUFFERED=1 PYTHONPATH={REPO}
exec srun {sys.executable} -m torch.distributed.run --nnodes $SLURM_NNODES --nproc-per-node 2 \\
  --rdzv-backend c10d --rdzv-endpoint $(hostname):{_free_port()} \\
  -m trainer train --outdir {run_dir} {" ".join(trainer_args)}
"""
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / "job.sh"
    path.write_text(script)
    return str(path)


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> str:
    return phantom_zip(tmp_path_factory.mktemp("data") / "tiny.zip", n=16, res=16)


def _submit(slurm, run_dir, *args: str) -> str:
    return slurm.sbatch(f"--chdir={REPO}", batch_script(run_dir, *args))


def _log(run_dir) -> str:
    return (run_dir / "log.txt").read_text()


def _wait_training(slurm, job: str, run_dir, timeout: float = 300) -> None:
    """Until the job's trainer has written its first tick (so a SIGTERM finds it training)."""
    stats = run_dir / "stats.jsonl"
    deadline = time.monotonic() + timeout
    while not (stats.exists() and stats.read_text().count("\n") >= 1):
        assert time.monotonic() < deadline and slurm.squeue_state(job) in {"PENDING", "RUNNING"}
        time.sleep(0.05)


def test_srun_torchrun_job_trains_and_its_cut_resume_is_exact(slurm, data, tmp_path):
    uncut, cut = tmp_path / "uncut", tmp_path / "cut"
    train = ["--data", data, *OPTIONS, "--kimg", TOTAL]
    job = _submit(slurm, uncut, *train)
    assert slurm.wait(job, {"COMPLETED"}, timeout=300) == "COMPLETED", _log(uncut)
    assert "2 process(es)" in _log(uncut) and "done: 0.256 kimg" in _log(uncut)
    straight = load(find_latest(str(uncut)))
    assert straight["world_size"] == 2 and straight["progress"]["cur_nimg"] == 256

    job = _submit(slurm, cut, *train)
    _wait_training(slurm, job, cut)
    slurm.cancel(job)  # SIGTERM to srun -> torchrun -> both ranks; SIGKILL after KillWait
    assert slurm.wait(job, {"CANCELLED"}, timeout=120) == "CANCELLED"
    assert "stop requested (SIGTERM)" in _log(cut)
    stopped = load(find_latest(str(cut)))["progress"]["cur_nimg"]
    assert 32 <= stopped < 256, "the job must stop well before the end to test anything"

    job = _submit(slurm, cut, "--resume", "latest", "--kimg", TOTAL)
    assert slurm.wait(job, {"COMPLETED"}, timeout=300) == "COMPLETED", _log(cut)
    resumed = load(find_latest(str(cut)))
    assert resumed["progress"]["cur_nimg"] == 256 and resumed["sampler"] == straight["sampler"]
    a, b = straight["G_ema"]["state_dict"], resumed["G_ema"]["state_dict"]
    assert a.keys() == b.keys()
    assert all(a[k].equal(b[k]) for k in a), "resumed G_ema differs from the uncut run"


def _trainers_of(run_dir) -> list[int]:
    """Pids of processes whose command line names this run directory."""
    pids = []
    for entry in os.listdir("/proc"):
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                if str(run_dir).encode() in f.read():
                    pids.append(int(entry))
        except (OSError, ValueError):
            continue
    return pids


def _wait_no_trainers(run_dir, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while _trainers_of(run_dir):
        assert time.monotonic() < deadline, f"trainer processes outlived the job: {_log(run_dir)}"
        time.sleep(0.2)


def test_a_killed_torchrun_leaves_no_worker_behind_and_they_stop_with_a_snapshot(
    slurm, data, tmp_path
):
    # A SIGTERM to the batch shell (--signal=B:TERM@N, or `scancel --batch`) reaches `exec srun`,
    # which turns it into SIGKILL for torchrun. torchrun's workers run in sessions of their own,
    # so proctrack/pgid (unlike a cgroup) does not reach them: they must notice the death.
    run = tmp_path / "run"
    job = _submit(slurm, run, "--data", data, *OPTIONS, "--kimg", "100")
    _wait_training(slurm, job, run)
    slurm.cancel(job, "--batch", "--signal=TERM")
    slurm.wait(job, {"COMPLETED", "FAILED", "CANCELLED"}, timeout=120)
    _wait_no_trainers(run, timeout=120)
    assert "stop requested (SIGTERM)" in _log(run)
    assert load(find_latest(str(run)))["progress"]["cur_nimg"] < 100_000


def test_a_time_limit_signal_to_the_steps_stops_torchrun_workers_with_a_snapshot(
    slurm, data, tmp_path
):
    # --signal=TERM@N without B: goes to the job steps, i.e. torchrun, which passes SIGTERM on
    # to its workers (the batch shell would turn it into SIGKILL, see above). torchrun itself
    # then exits 1 (its SignalException), so the job ends FAILED: the run directory tells why.
    run = tmp_path / "run"
    job = slurm.sbatch(f"--chdir={REPO}", "--partition=short", "--time=5", "--signal=TERM@170",
                       batch_script(run, "--data", data, *OPTIONS, "--kimg", "100"))  # fmt: skip
    _wait_training(slurm, job, run)
    # now the limit comes close: its warning time (3 min - 170 s) has passed, so slurmctld
    # signals at its next time-limit check (<= 30 s), well before the limit itself
    slurm.update(job, TimeLimit="3")
    state = slurm.wait(job, {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT"}, timeout=300)
    assert state != "TIMEOUT", "the trainer must stop on the signal, before the limit"
    _wait_no_trainers(run, timeout=60)
    assert "stop requested (SIGTERM)" in _log(run)
    assert 32 <= load(find_latest(str(run)))["progress"]["cur_nimg"] < 100_000
