"""The SLURM backend: a batch script per launch, one `squeue` per monitor pass, `scancel`.

We call `sbatch`/`squeue`/`scontrol`/`scancel` directly rather than through submitit: submitit
reads job states from `sacct`, i.e. it needs the accounting database, which many small clusters
do not run. The commands below work on any SLURM ≥ 20.11 with or without accounting.

The batch script is written into the run folder (`job.sbatch`, beside `command.txt`), readable
and re-runnable by hand. It `exec`s the command so SIGTERM from `scancel` or from the time-limit
warning (`--signal=B:TERM@margin`) reaches the trainer, which writes its snapshot and exits 4.
"""

from __future__ import annotations

import logging
import re
import shlex
import shutil
import subprocess
from pathlib import Path

from app.trainer_client.commands import ROOT
from app.trainer_client.launch import Launch, Started, Status, SubmitFailed, recorded_exit
from app.trainer_client.slurm_states import describe_end, describe_pending, is_final

log = logging.getLogger(__name__)
SCRIPT = "job.sbatch"
CALL_TIMEOUT_S = 30
PREFIX = "slurm:"
_FORGOTTEN = (
    "the cluster no longer knows this job and the trainer left no exit record "
    "(it was killed before it could write one)"
)


def job_number(scheduler_id: str | None) -> str | None:
    if scheduler_id and scheduler_id.startswith(PREFIX):
        return scheduler_id[len(PREFIX) :]
    return None


class SlurmExecutor:
    kind = "slurm"
    requeues = True

    def __init__(self, settings, python: str):  # noqa: ANN001 - Settings
        self.settings = settings
        self.python = python
        self._seen: dict[str, tuple[str, str, str]] = {}  # job number -> (state, reason, nodes)
        self._listed = False  # the last listing succeeded
        self._stale = True  # list again at the next check

    # ---- submitting -----------------------------------------------------------------------

    def script(self, launch: Launch) -> str:
        """The batch script for one launch (also what `job.sbatch` holds)."""
        s, res = self.settings, launch.resources
        gpus, nodes = max(0, res.gpus), max(1, res.nodes)
        name = re.sub(r"[^A-Za-z0-9_.-]+", "-", launch.name)  # one word for #SBATCH
        lines = ["#!/bin/bash", f"#SBATCH --job-name=medsynth-{name}"]
        lines.append(f"#SBATCH --output={launch.run_dir / 'slurm-%j.out'}")
        lines += [
            f"#SBATCH --chdir={ROOT}",
            f"#SBATCH --nodes={nodes}",
            "#SBATCH --ntasks-per-node=1",
            # SLURM never reruns this script itself (after a node failure it would rerun a
            # fresh run's command line over its snapshots): the app resubmits, --resume latest.
            "#SBATCH --no-requeue",
        ]
        if gpus:
            lines.append(f"#SBATCH --gpus-per-node={gpus}")
        for flag, value in (("partition", s.slurm_partition), ("account", s.slurm_account),
                            ("qos", s.slurm_qos), ("cpus-per-task", s.slurm_cpus or ""),
                            ("mem", s.slurm_mem)):  # fmt: skip
            if value:
                lines.append(f"#SBATCH --{flag}={value}")
        limit = _time_limit(res.time_limit_min, s.slurm_time_limit)
        if limit:
            # SIGTERM before the limit: the trainer snapshots and exits 4, the app requeues.
            # One process: to the batch shell, which is the trainer (exec). Under srun: to the
            # step's tasks (srun itself would turn a SIGTERM into SIGKILL for them).
            margin = int(s.slurm_signal_margin_s)
            if res.time_limit_min:
                margin = min(margin, res.time_limit_min * 30)  # never more than half the limit
            target = "TERM" if gpus * nodes > 1 else "B:TERM"
            lines.append(f"#SBATCH --time={limit}")
            lines.append(f"#SBATCH --signal={target}@{margin}")
        lines += [f"#SBATCH {x.strip()}" for x in s.slurm_extra.split(";") if x.strip()]
        lines.append("# Written by MedSynth; re-run by hand with: sbatch " + SCRIPT)
        lines.append("set -e")
        if s.slurm_env_setup:
            lines.append(s.slurm_env_setup)
        lines.append("export PYTHONUNBUFFERED=1")
        lines += [f"export {k}={shlex.quote(v)}" for k, v in launch.env.items()]
        argv = list(launch.argv)
        if gpus * nodes > 1:
            lines.append('head=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)')
            lines.append("port=$((29500 + SLURM_JOB_ID % 1000))")
            argv = ["srun", "--kill-on-bad-exit=1", argv[0], "-m", "torch.distributed.run",
                    "--nnodes", "$SLURM_NNODES", "--nproc-per-node", str(gpus),
                    "--rdzv-backend", "c10d", "--rdzv-endpoint", "$head:$port",
                    "--rdzv-id", "$SLURM_JOB_ID", *argv[1:]]  # fmt: skip
        if launch.nice > 0:
            argv = ["nice", "-n", str(launch.nice), *argv]
        cmd = " ".join(f'"{a}"' if a.startswith("$") else shlex.quote(a) for a in argv)
        out = (
            f">> {shlex.quote(str(launch.run_dir / launch.log_name))}"
            if launch.log_name
            else "> /dev/null"
        )
        err = (
            f"2>> {shlex.quote(str(launch.run_dir / launch.stderr_name))}"
            if launch.stderr_name
            else "2>&1"
        )
        lines.append(f"exec {cmd} {out} {err}")
        return "\n".join(lines) + "\n"

    def launch(self, launch: Launch) -> Started:
        sbatch = shutil.which("sbatch")
        if sbatch is None:
            raise SubmitFailed(
                "the cluster's `sbatch` is not on this server's PATH: install the SLURM client "
                "(Debian: slurm-client and munge) on the web server, or set MEDSYNTH_EXECUTOR=local"
            )
        launch.run_dir.mkdir(parents=True, exist_ok=True)
        path = launch.run_dir / SCRIPT
        path.write_text(self.script(launch))
        (launch.run_dir / "command.txt").write_text(shlex.join(launch.argv) + "\n")
        try:
            out = subprocess.run([sbatch, "--parsable", str(path)], capture_output=True, text=True,
                                 timeout=CALL_TIMEOUT_S, cwd=launch.run_dir)  # fmt: skip
        except (OSError, subprocess.SubprocessError) as exc:
            raise SubmitFailed(f"sbatch did not answer: {exc}") from exc
        if out.returncode != 0:
            said = " ".join(out.stderr.split()).replace("sbatch: error: ", "")
            raise SubmitFailed(f"the cluster refused the job: {said or 'sbatch failed'}")
        number = out.stdout.strip().split(";")[0]
        if not number.isdigit():
            raise SubmitFailed(f"sbatch answered something unexpected: {out.stdout.strip()!r}")
        if launch.log_name:
            with open(launch.run_dir / launch.log_name, "a") as f:
                f.write(f"$ sbatch {SCRIPT}  # SLURM job {number}\n")
        log.info("%s submitted to SLURM as job %s", launch.name, number)
        return Started(
            scheduler_id=PREFIX + number, device="cuda" if launch.resources.gpus else "cpu"
        )

    # ---- following ------------------------------------------------------------------------

    def refresh(self) -> None:
        """A new monitor pass: the first `check` lists the queue again (none without jobs)."""
        self._stale = True

    def _list(self) -> None:
        """One squeue call for every job this user has (pending, running, recently ended)."""
        self._stale = False
        try:
            out = subprocess.run(
                ["squeue", "--noheader", "--me", "--states=all", "--format=%i|%T|%r|%N"],
                capture_output=True, text=True, timeout=CALL_TIMEOUT_S,
            )  # fmt: skip
        except (OSError, subprocess.SubprocessError) as exc:
            self._listed = False
            log.warning("squeue failed: %s", exc)
            return
        if out.returncode != 0:
            self._listed = False
            log.warning("squeue failed: %s", out.stderr.strip())
            return
        seen: dict[str, tuple[str, str, str]] = {}
        for line in out.stdout.splitlines():
            parts = line.strip().split("|")
            if len(parts) == 4:
                seen[parts[0]] = (parts[1], parts[2], parts[3])
        self._seen, self._listed = seen, True

    def check(self, key: int, pid: int | None, scheduler_id: str | None, run_dir: str) -> Status:
        number = job_number(scheduler_id)
        if number is None:
            return Status(exited=True, code=recorded_exit(run_dir))
        if self._stale:
            self._list()
        if not self._listed:
            return Status(exited=False)  # the scheduler did not answer: decide nothing now
        seen = self._seen.get(number)
        if seen is None:  # ended and forgotten: the run folder decides
            code = recorded_exit(run_dir)
            if code is not None:
                return Status(exited=True, code=code)
            return Status(exited=True, code=None, ended_by="UNKNOWN", words=_FORGOTTEN)
        state, reason, nodes = seen
        if state == "PENDING":
            return Status(exited=False, waiting=describe_pending(reason))
        if not is_final(state):
            where = f" on {nodes}" if nodes and nodes != "(null)" else ""
            return Status(
                exited=False, waiting=None if state == "RUNNING" else state.lower() + where
            )
        code, state = self._exit_code(number, state)
        recorded = recorded_exit(run_dir)
        if recorded is not None and state in ("COMPLETED", "FAILED"):
            code = recorded  # torchrun replaces its workers' codes with its own
        ended_by = None if state in ("COMPLETED", "FAILED", "CANCELLED") else state
        return Status(exited=True, code=code, ended_by=ended_by,
                      words=describe_end(state, reason) if ended_by else None)  # fmt: skip

    def _exit_code(self, number: str, state: str) -> tuple[int | None, str]:
        """ExitCode=N:S from scontrol (S: the signal that killed it), and the exact state."""
        try:
            out = subprocess.run(["scontrol", "show", "job", "-o", number], capture_output=True,
                                 text=True, timeout=CALL_TIMEOUT_S)  # fmt: skip
        except (OSError, subprocess.SubprocessError):
            return None, state
        m = re.search(r"\bExitCode=(\d+):(\d+)", out.stdout)
        s = re.search(r"\bJobState=(\S+)", out.stdout)
        state = s.group(1) if s else state
        if not m:
            return None, state
        code, sig = int(m.group(1)), int(m.group(2))
        return (-sig if sig and not code else code), state

    def alive(self, pid: int | None, scheduler_id: str | None, run_dir: str) -> bool:
        number = job_number(scheduler_id)
        if number is None:
            return False
        seen = self._seen.get(number)
        return seen is None or not is_final(seen[0])

    def stop(self, pid: int | None, scheduler_id: str | None, run_dir: str) -> bool:
        """scancel: SIGTERM to the batch step (the trainer, exec'd), SIGKILL after KillWait."""
        return cancel(scheduler_id or "", run_dir)

    def kill(self, pid: int | None, scheduler_id: str | None) -> None:
        number = job_number(scheduler_id)
        if number is not None:
            _scancel(["--signal=KILL", "--full", number])

    def forget(self, key: int) -> None:
        pass


def cancel(scheduler_id: str, run_dir: str = "") -> bool:
    """Stop a job we submitted so that its trainer writes a snapshot first.

    Running: SIGTERM only (the app SIGKILLs after its grace). To the batch shell when the script
    `exec`s the trainer; to the steps when it `exec`s srun (srun turns a SIGTERM it receives
    into SIGKILL for its tasks, so a plain scancel would kill torchrun's workers unsaved).
    Pending (nothing to signal): removed with a plain scancel."""
    number = job_number(scheduler_id)
    if number is None:
        return False
    try:
        steps = "exec srun " in script_path(run_dir).read_text() if run_dir else False
    except OSError:
        steps = False
    signalled = ["--signal=TERM", number] if steps else ["--signal=TERM", "--batch", number]
    return _scancel(signalled) or _scancel([number])


def _scancel(args: list[str]) -> bool:
    try:
        out = subprocess.run(["scancel", *args], capture_output=True, text=True,
                             timeout=CALL_TIMEOUT_S)  # fmt: skip
    except (OSError, subprocess.SubprocessError) as exc:
        log.warning("scancel failed: %s", exc)
        return False
    return out.returncode == 0


def _time_limit(minutes: int | None, default: str) -> str:
    """A job's own limit (minutes) or the site's default (any SLURM time string)."""
    if minutes:
        return str(int(minutes))
    return default.strip()


def script_path(run_dir: str) -> Path:
    return Path(run_dir) / SCRIPT
