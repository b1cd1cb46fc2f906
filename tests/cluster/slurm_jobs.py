"""Submitting to and following a real SLURM from tests: sbatch, squeue/scontrol, scancel."""

from __future__ import annotations

import subprocess
import time
from dataclasses import dataclass

FINISHED = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL",
            "PREEMPTED", "BOOT_FAIL", "DEADLINE"}  # fmt: skip


def _run(*cmd: str) -> str:
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, f"{' '.join(cmd)}: {out.stderr.strip()}"
    return out.stdout


@dataclass(frozen=True)
class Slurm:
    conf: str

    def sbatch(self, *args: str) -> str:
        """Submit; returns the job id (`--parsable` prints `id[;cluster]`)."""
        return _run("sbatch", "--parsable", *args).strip().split(";")[0]

    def squeue_state(self, job: str) -> str:
        """squeue's state of a job, finished ones included; '' once the job has left."""
        out = subprocess.run(
            ["squeue", "--noheader", "--states=all", "--format=%T", f"--jobs={job}"],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        return out.stdout.strip() if out.returncode == 0 else ""

    def show(self, job: str) -> dict[str, str]:
        """`scontrol show job -o` as a dict; {} once the job has left."""
        out = subprocess.run(["scontrol", "show", "job", "-o", job], capture_output=True,
                             text=True, timeout=60)  # fmt: skip
        if out.returncode != 0:
            assert "Invalid job id" in out.stderr, out.stderr
            return {}
        return dict(f.split("=", 1) for f in out.stdout.split() if "=" in f)

    def wait(self, job: str, states: set[str], timeout: float = 180) -> str:
        """Poll until the job is in one of `states`; returns it (fails on another end state)."""
        deadline = time.monotonic() + timeout
        seen = ""
        while time.monotonic() < deadline:
            seen = self.squeue_state(job)
            if seen in states:
                return seen
            assert seen not in FINISHED, f"job {job} ended {seen}: {self.show(job)}"
            time.sleep(0.25)
        raise AssertionError(f"job {job} not {states} after {timeout} s (last {seen!r})")

    def cancel(self, job: str, *args: str) -> None:
        _run("scancel", *args, job)

    def update(self, job: str, **fields: str) -> None:
        """`scontrol update JobId=job Key=value ...` (e.g. TimeLimit)."""
        _run("scontrol", "update", f"JobId={job}", *(f"{k}={v}" for k, v in fields.items()))
