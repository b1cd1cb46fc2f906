"""The test cluster behaves as the app relies on: jobs run and are reported, then leave;
scancel and a time limit's --signal reach the batch script as SIGTERM."""

from __future__ import annotations

import time


def test_a_job_runs_to_completed_is_reported_and_then_leaves(slurm, tmp_path):
    job = slurm.sbatch(f"--chdir={tmp_path}", "--output=out.txt", "--wrap", "sleep 1; echo ran")
    assert slurm.wait(job, {"COMPLETED"}, timeout=120) == "COMPLETED"
    shown = slurm.show(job)
    assert shown["JobState"] == "COMPLETED" and shown["ExitCode"] == "0:0"
    assert (tmp_path / "out.txt").read_text() == "ran\n"
    # MinJobAge: the scheduler forgets the job; the app then decides from the run directory
    deadline = time.monotonic() + 240
    while slurm.show(job):
        assert time.monotonic() < deadline, "a finished job never left squeue/scontrol"
        time.sleep(1)
    assert slurm.squeue_state(job) == ""


TRAP = """#!/bin/bash
trap 'echo TERM > {out}/term; exit 0' TERM
echo started > {out}/started
while true; do sleep 0.1; done
"""


def _trap_script(tmp_path) -> str:
    script = tmp_path / "trap.sh"
    script.write_text(TRAP.format(out=tmp_path))
    return str(script)


def _wait_file(path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{path.name} never written"
        time.sleep(0.1)


def test_scancel_sends_sigterm_to_the_batch_script(slurm, tmp_path):
    job = slurm.sbatch(f"--chdir={tmp_path}", "--output=/dev/null", _trap_script(tmp_path))
    _wait_file(tmp_path / "started", 120)
    slurm.cancel(job)
    _wait_file(tmp_path / "term", 30)
    assert slurm.wait(job, {"CANCELLED"}, timeout=60) == "CANCELLED"


def test_signal_before_the_time_limit_reaches_the_batch_script(slurm, tmp_path):
    # 1 minute limit, TERM asked for 50 s before it: it comes ~10 s in (slurmctld checks
    # limits about every 30 s), and a script that then exits by itself ends COMPLETED
    job = slurm.sbatch(f"--chdir={tmp_path}", "--output=/dev/null", "--partition=short",
                       "--time=1", "--signal=B:TERM@50", _trap_script(tmp_path))  # fmt: skip
    _wait_file(tmp_path / "started", 120)
    started = time.monotonic()
    _wait_file(tmp_path / "term", 90)
    assert time.monotonic() - started < 60, "the signal must come before the limit"
    assert slurm.show(job)["TimeLimit"] == "00:01:00"
    assert slurm.wait(job, {"COMPLETED"}, timeout=60) == "COMPLETED"
