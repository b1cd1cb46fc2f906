"""Where trainer commands run: one seam, two backends.

The rest of the app asks an executor to start a command for a row (a training job, a metric
run, a utility run), to tell the state of what it started, and to stop it. It never knows which
backend runs: `local` (a child process of this app, the default) or `slurm` (a batch job on the
cluster, `MEDSYNTH_EXECUTOR=slurm`). Both follow the same run folder, which is why the run folder
must live on a filesystem the compute nodes share with the app.

A row records the pid (local) or the scheduler's id (`slurm:N`); a restarted app re-attaches by
either. An exit code the backend could not see (the app restarted, the scheduler forgot the job)
is read from the trainer's `exit.json` in the run folder, never guessed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from app.trainer_client import processes, rundir


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


class Executor(Protocol):
    kind: str
    requeues: bool  # a run stopped by its time limit is launched again automatically

    def launch(self, launch: Launch) -> Started: ...

    def refresh(self) -> None:
        """Once per monitor pass, before `check`: one scheduler call for all launches."""

    def check(
        self, key: int, pid: int | None, scheduler_id: str | None, run_dir: str
    ) -> Status: ...

    def alive(self, pid: int | None, scheduler_id: str | None, run_dir: str) -> bool: ...

    def stop(self, pid: int | None, scheduler_id: str | None, run_dir: str) -> bool:
        """SIGTERM: the trainer writes its snapshot and exits."""

    def kill(self, pid: int | None, scheduler_id: str | None) -> None: ...

    def forget(self, key: int) -> None: ...


def recorded_exit(run_dir: str) -> int | None:
    """The exit code the trainer left in its run folder (exit.json), if any."""
    rec = rundir.read_exit_record(run_dir)
    code = (rec or {}).get("code")
    return code if isinstance(code, int) else None


def local_argv(argv: list[str], resources: Resources) -> list[str]:
    """`python -m trainer ...` as is, or under torchrun with one process per GPU."""
    procs = resources.gpus * max(1, resources.nodes)
    if procs > 1 and argv[1:3] == ["-m", "trainer"]:
        return [argv[0], "-m", "torch.distributed.run", "--standalone",
                f"--nproc_per_node={procs}", *argv[1:]]  # fmt: skip
    return list(argv)


class LocalExecutor:
    """Child processes of this app, in sessions of their own (today's behaviour)."""

    kind = "local"
    requeues = False

    def __init__(self, python: str):
        self.python = python
        self._procs = processes.ProcessFollower()

    def launch(self, launch: Launch) -> Started:
        argv = local_argv(launch.argv, launch.resources)
        if launch.nice > 0:
            argv = ["nice", "-n", str(launch.nice), *argv]  # nice execs: the pid stays
        try:
            proc = processes.spawn(argv, launch.run_dir, launch.env, launch.log_name,
                                   launch.stderr_name)  # fmt: skip
        except OSError as exc:
            raise SubmitFailed(f"could not start the process: {exc}") from exc
        self._procs.started(launch.key, proc)
        return Started(pid=proc.pid)

    def refresh(self) -> None:
        pass

    def check(self, key: int, pid: int | None, scheduler_id: str | None, run_dir: str) -> Status:
        exited, code = self._procs.check(key, pid, run_dir)
        if exited and code is None:
            code = recorded_exit(run_dir)
        return Status(exited=exited, code=code)

    def alive(self, pid: int | None, scheduler_id: str | None, run_dir: str) -> bool:
        return bool(pid) and processes.is_ours(pid, run_dir)

    def stop(self, pid: int | None, scheduler_id: str | None, run_dir: str) -> bool:
        if not self.alive(pid, scheduler_id, run_dir):
            return False
        return processes.request_stop(pid)

    def kill(self, pid: int | None, scheduler_id: str | None) -> None:
        if pid:
            processes.kill_tree(pid)

    def forget(self, key: int) -> None:
        self._procs.forget(key)


def make_executor(settings) -> Executor:  # noqa: ANN001 - Settings (no import cycle)
    """The configured backend: `local` (default) or `slurm`."""
    from app.trainer_client.commands import python_for

    python = python_for(settings.python_executable)
    if settings.executor == "slurm":
        from app.trainer_client.slurm import SlurmExecutor

        return SlurmExecutor(settings, python)
    return LocalExecutor(python)


def stop_launch(pid: int | None, scheduler_id: str | None, run_dir: str) -> bool:
    """SIGTERM to whatever runs a row, decided by the row itself (a scheduler id or a pid), so a
    cancel from a web request needs no monitor: the trainer snapshots and exits."""
    if scheduler_id:
        from app.trainer_client.slurm import cancel

        return cancel(scheduler_id)
    if pid and processes.is_ours(pid, run_dir):
        return processes.request_stop(pid)
    return False
