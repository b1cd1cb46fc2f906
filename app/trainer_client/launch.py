"""What goes into and comes out of an executor (executor.py): one launch, its state, a refusal.

Both backends (executor.LocalExecutor, slurm.SlurmExecutor) speak these types; they live here,
below both, so neither imports the other.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from app.trainer_client import rundir


@dataclass(frozen=True)
class Resources:
    """What one launch asks for. gpus are per node; 0 runs on CPUs."""

    gpus: int = 0
    nodes: int = 1
    time_limit_min: int | None = None  # None: the site's default (slurm) / unlimited (local)


@dataclass(frozen=True)
class Launch:
    """A command to start: `argv` is one process (`python -m trainer ...`); the executor adds
    torchrun when resources ask for more than one GPU or node."""

    key: int  # the row's id (each follower has its own executor, so ids do not collide)
    argv: list[str]
    run_dir: Path
    name: str  # "job-12", "metrics-3": for the scheduler's queue and the log
    resources: Resources = field(default_factory=Resources)
    env: dict[str, str] = field(default_factory=dict)
    log_name: str | None = "worker.log"  # stdout (+stderr unless stderr_name)
    stderr_name: str | None = None
    nice: int = 0


@dataclass(frozen=True)
class Started:
    pid: int | None = None
    scheduler_id: str | None = None
    device: str = "cpu"


@dataclass(frozen=True)
class Status:
    """What the backend knows of a launch right now."""

    exited: bool
    code: int | None = None  # exit code when known (negative: killed by that signal)
    waiting: str | None = None  # still queued by the scheduler: why, in the user's words
    ended_by: str | None = None  # the scheduler ended it: TIMEOUT, OUT_OF_MEMORY, NODE_FAIL...
    words: str | None = None  # a sentence for the job page when ended_by is set


class SubmitFailed(RuntimeError):
    """The backend refused the launch; str() is for the user (the scheduler's own message)."""


def recorded_exit(run_dir: str) -> int | None:
    """The exit code the trainer left in its run folder (exit.json), if any."""
    rec = rundir.read_exit_record(run_dir)
    code = (rec or {}).get("code")
    return code if isinstance(code, int) else None
