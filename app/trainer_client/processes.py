"""Starting trainer processes and following them: one spawn, one follower, psutil for the rest.

Each process runs in a session of its own (so a signal reaches its whole group) and is
recognised later by its command line holding "trainer" and its run folder, so a restarted app
re-attaches to what it started before and never mistakes a reused pid for it.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path

import psutil

from app.trainer_client.commands import ROOT

_GONE = (psutil.STATUS_ZOMBIE, psutil.STATUS_DEAD)
_PROBE = (
    "import json, torch; n = torch.cuda.device_count() if torch.cuda.is_available() else 0; "
    "print(json.dumps({'gpus': n, 'names': [torch.cuda.get_device_name(i) for i in range(n)]}))"
)


@dataclass(frozen=True)
class Devices:
    """What the machine offers the trainer: CUDA GPUs (0 means jobs run on the CPU)."""

    gpus: int = 0
    names: tuple[str, ...] = ()
    cluster: bool = False  # jobs go to a scheduler: gpus is the most one node may ask for
    default_gpus: int = 1

    @property
    def cuda(self) -> bool:
        return self.gpus > 0

    @property
    def where(self) -> str:
        return "a cluster node" if self.cluster else "this machine"


def detect_devices(python: str, timeout: float = 120.0) -> Devices:
    """CUDA GPUs as torch sees them, asked in a child so the app never initialises CUDA itself.

    Without an NVIDIA device node there is nothing to ask (and no torch import to pay for)."""
    if not any(Path("/dev").glob("nvidia[0-9]*")):
        return Devices()
    try:
        out = subprocess.run(
            [python, "-c", _PROBE], capture_output=True, text=True, timeout=timeout, cwd=ROOT
        )
        info = json.loads(out.stdout.strip().splitlines()[-1])
        return Devices(int(info["gpus"]), tuple(info["names"]))
    except (OSError, subprocess.SubprocessError, ValueError, IndexError, KeyError):
        return Devices()


def spawn(
    argv: list[str],
    run_dir: Path,
    env_extra: dict[str, str] | None = None,
    log_name: str | None = "worker.log",
    stderr_name: str | None = None,
) -> subprocess.Popen:
    """Start a trainer command in a new session, cwd the repository, stdin closed.

    stdout (and stderr, unless `stderr_name` gives it a file of its own) go to `log_name`
    under run_dir, which starts with the command line; command.txt always holds it."""
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "command.txt").write_text(shlex.join(argv) + "\n")
    env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env_extra or {})}
    out = open(run_dir / log_name, "ab") if log_name else None  # noqa: SIM115 - closed below
    err = open(run_dir / stderr_name, "wb") if stderr_name else None  # noqa: SIM115
    try:
        if out is not None:
            out.write(f"$ {shlex.join(argv)}\n".encode())
            out.flush()
        return subprocess.Popen(
            argv, cwd=ROOT, stdin=subprocess.DEVNULL,
            stdout=out if out is not None else subprocess.DEVNULL,
            stderr=err if err is not None else subprocess.STDOUT if out else subprocess.DEVNULL,
            start_new_session=True, env=env,
        )  # fmt: skip
    finally:
        for f in (out, err):
            if f is not None:
                f.close()


def _process(pid: int | None) -> psutil.Process | None:
    """The live, non-zombie process with this pid, or None."""
    if not pid:
        return None
    try:
        proc = psutil.Process(pid)
        return None if proc.status() in _GONE else proc
    except psutil.Error:
        return None


def is_ours(pid: int | None, run_dir: str) -> bool:
    """A live process whose argv holds 'trainer' and RUN_DIR (not a reused pid)."""
    proc = _process(pid)
    if proc is None:
        return False
    try:
        args = proc.cmdline()
    except psutil.Error:
        return False
    return any("trainer" in a for a in args) and str(run_dir) in args


def try_reap(pid: int) -> tuple[bool, int | None]:
    """For a pid that may be our child: (exited, exit code). Not our child → (gone?, None)."""
    try:
        done, status = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return _process(pid) is None, None
    if done == 0:
        return False, None
    return True, os.waitstatus_to_exitcode(status)


class ProcessFollower:
    """The trainer processes the app follows, by row id (jobs, metric runs, utility runs):
    its own children (reaped here, so their exit codes are known) and those a former app
    started (followed by pid and command line)."""

    def __init__(self) -> None:
        self._children: dict[int, subprocess.Popen] = {}
        self._exit_codes: dict[int, int] = {}  # reaped but not yet recorded

    def started(self, key: int, proc: subprocess.Popen) -> None:
        self._children[key] = proc
        self._exit_codes.pop(key, None)

    def forget(self, key: int) -> None:
        """The row recorded the outcome: nothing more to remember."""
        self._exit_codes.pop(key, None)

    def check(self, key: int, pid: int | None, run_dir: str) -> tuple[bool, int | None]:
        """(exited, exit code or None when it was not our child to reap)."""
        if key in self._exit_codes:
            return True, self._exit_codes[key]
        if pid is None:
            return True, None  # claimed, but the app stopped before the process started
        proc = self._children.get(key)
        if proc is not None and proc.pid == pid:
            code = proc.poll()
            if code is None:
                return False, None
            del self._children[key]
            self._exit_codes[key] = code
            return True, code
        if is_ours(pid, run_dir):
            return False, None  # started by a former app: alive
        _, code = try_reap(pid)
        if code is not None:
            self._exit_codes[key] = code
        return True, code


def signal_group(pid: int, sig: int) -> bool:
    """Send a signal to the process group (torchrun and its workers included)."""
    try:
        os.killpg(pid, sig)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        try:
            os.kill(pid, sig)
            return True
        except OSError:
            return False


def descendants(pid: int) -> list[int]:
    """Pids of the live descendants (torchrun puts its workers in sessions of their own, so
    the process group does not reach them)."""
    proc = _process(pid)
    if proc is None:
        return []
    try:
        kids = proc.children(recursive=True)
    except psutil.Error:
        return []
    return [k.pid for k in kids if _process(k.pid) is not None]


def _is_torchrun(pid: int) -> bool:
    proc = _process(pid)
    try:
        return proc is not None and "torch.distributed.run" in proc.cmdline()
    except psutil.Error:
        return False


def request_stop(pid: int) -> bool:
    """Ask the trainer to snapshot and exit (SIGTERM).

    Under torchrun only the workers are signalled: they snapshot and exit 0, and torchrun then
    exits 0 too (signalled itself, it would exit 1 after forwarding the signal)."""
    if not _is_torchrun(pid):
        return signal_group(pid, signal.SIGTERM)
    workers = descendants(pid)
    for worker in workers:
        try:
            os.kill(worker, signal.SIGTERM)
        except OSError:
            pass
    return bool(workers) or signal_group(pid, signal.SIGTERM)


def kill_tree(pid: int) -> None:
    """SIGKILL the group and every descendant (torchrun workers included)."""
    for child in descendants(pid):
        try:
            os.kill(child, signal.SIGKILL)
        except OSError:
            pass
    signal_group(pid, signal.SIGKILL)


def describe_exit(code: int | None) -> str:
    if code is None:
        return "exit code unknown"
    if code < 0:
        try:
            return f"killed by signal {-code} ({signal.Signals(-code).name})"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"
