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

from typing import Protocol

from app.trainer_client import processes
from app.trainer_client.launch import (  # noqa: F401 - the seam's types, named from here too
    Launch,
    Resources,
    Started,
    Status,
    SubmitFailed,
    recorded_exit,
)


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

        return cancel(scheduler_id, run_dir)
    if pid and processes.is_ours(pid, run_dir):
        return processes.request_stop(pid)
    return False
