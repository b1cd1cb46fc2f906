"""Trainer processes: spawn in their own process group, recognise, signal, and read run dirs.

Nothing here touches the database; the monitor and the job services decide what to do.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from app.models import Job
from app.services.training.job_options import Devices

ROOT = Path(__file__).resolve().parent.parent.parent
SNAPSHOT_RE = re.compile(r"^snapshot-(\d+)\.pt$")
_PROBE = (
    "import json, torch; n = torch.cuda.device_count() if torch.cuda.is_available() else 0; "
    "print(json.dumps({'gpus': n, 'names': [torch.cuda.get_device_name(i) for i in range(n)]}))"
)


def python_for(configured: str) -> str:
    return configured or sys.executable


def detect_devices(python: str, timeout: float = 120.0) -> Devices:
    """CUDA GPUs as torch sees them, asked in a child so the app never initialises CUDA itself.

    Without an NVIDIA device node there is nothing to ask (and no torch import to pay for).
    """
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


def spawn(argv: list[str], run_dir: Path, env_extra: dict[str, str]) -> subprocess.Popen:
    """Start the trainer in a new session (its own process group), output to worker.log."""
    run_dir.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PYTHONUNBUFFERED": "1", **env_extra}
    with open(run_dir / "worker.log", "ab") as log:
        log.write(f"$ {' '.join(argv)}\n".encode())
        log.flush()
        return subprocess.Popen(
            argv,
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=env,
        )


def _arg(v: float) -> str:
    return str(int(v)) if float(v).is_integer() else repr(float(v))


def trainer_argv(python: str, job: Job, resume: str | None) -> list[str]:
    """The command line of one launch of a job (torchrun when it spans several GPUs).

    `--resume latest` continues with the run's own options; only kimg, snap, device and the
    metrics options may change, so nothing else is passed (the trainer would warn otherwise).
    """
    o = job.options
    head = [python, "-m", "trainer"]
    if o.get("gpus", 0) > 1:
        head = [python, "-m", "torch.distributed.run", "--standalone"]
        head += [f"--nproc_per_node={o['gpus']}", "-m", "trainer"]
    device = ["--device", "cuda" if o.get("gpus", 0) > 0 else "cpu"]
    every = o.get("metrics_every") or 0  # FID/KID every N snapshots; 0 = off, the trainer's default
    metrics = ["--metrics-every", str(every)] if every else []
    argv = head + ["train", "--data", o["data"], "--outdir", job.run_dir]
    if resume == "latest":
        kimg = ["--kimg", _arg(job.total_kimg), "--snap", str(o["snap"])]
        return argv + ["--resume", "latest"] + kimg + metrics + device
    argv += ["--res", str(o["resolution"]), "--kimg", _arg(o["kimg"])]
    argv += ["--batch", str(o["batch"]), "--gamma", _arg(o["gamma"]), "--aug", o["aug"]]
    if o["aug"] == "ada":
        argv += ["--target", _arg(o["target"])]
    argv += ["--mirror"] if o["mirror"] else []
    argv += ["--cond"] if o["cond"] else []
    argv += ["--snap", str(o["snap"]), "--seed", str(o["seed"])]
    for key in ("tick", "cbase", "cmax", "zdim"):
        if o.get(key) is not None:
            argv += [f"--{key}", _arg(o[key])]
    argv += metrics + device
    if resume:
        argv += ["--resume", resume]
    return argv


class ChildProcesses:
    """The subprocesses this app follows, by row id: its own children (reaped here, so their
    exit codes are known) and those a former app started (followed through /proc)."""

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
        if is_our_trainer(pid, run_dir):
            return False, None  # started by a former app: alive, followed through /proc
        _, code = try_reap(pid)
        if code is not None:
            self._exit_codes[key] = code
        return True, code


def _proc_state(pid: int) -> str | None:
    """The one-letter state from /proc/PID/stat (Z for a zombie), or None when gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[-1].split()[0]


def is_our_trainer(pid: int | None, run_dir: str) -> bool:
    """A live, non-zombie process whose argv holds 'trainer' and RUN_DIR (not a reused pid)."""
    if not pid or _proc_state(pid) in (None, "Z", "X"):
        return False
    try:
        args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    text = [a.decode(errors="replace") for a in args]
    return any("trainer" in a for a in text) and str(run_dir) in text


def try_reap(pid: int) -> tuple[bool, int | None]:
    """For a pid that may be our child: (exited, exit code). Not our child → (not alive?, None)."""
    try:
        done, status = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return _proc_state(pid) in (None, "Z", "X"), None
    if done == 0:
        return False, None
    return True, os.waitstatus_to_exitcode(status)


def signal_group(pid: int, sig: int) -> bool:
    """Send a signal to the trainer's process group (torchrun and its workers included)."""
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


def _descendants(pid: int) -> list[int]:
    """Pids of the live descendants of `pid`, from /proc (torchrun puts its workers in
    sessions of their own, so the process group does not reach them)."""
    parents: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[-1].split()
        except OSError:
            continue
        if fields[0] not in ("Z", "X"):
            parents.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        kids = parents.get(todo.pop(), [])
        found += kids
        todo += kids
    return found


def _is_torchrun(pid: int) -> bool:
    try:
        return b"torch.distributed.run" in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False


def request_stop(pid: int) -> bool:
    """Ask the trainer to snapshot and exit (SIGTERM).

    Under torchrun only the workers are signalled: they snapshot and exit 0, and torchrun then
    exits 0 too (signalled itself, it would exit 1 after forwarding the signal).
    """
    if not _is_torchrun(pid):
        return signal_group(pid, signal.SIGTERM)
    workers = _descendants(pid)
    for worker in workers:
        try:
            os.kill(worker, signal.SIGTERM)
        except OSError:
            pass
    return bool(workers) or signal_group(pid, signal.SIGTERM)


def kill_tree(pid: int) -> None:
    """SIGKILL the trainer's group and every descendant (torchrun workers included)."""
    for child in _descendants(pid):
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


# ---- reading a run directory ---------------------------------------------------------------


def read_new_stats(path: Path, offset: int) -> tuple[list[dict[str, Any]], int]:
    """Complete JSON lines of stats.jsonl after byte `offset`; a half-written line waits."""
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            data = f.read()
    except OSError:
        return [], offset
    end = data.rfind(b"\n")
    if end < 0:
        return [], offset
    rows = []
    for line in data[: end + 1].splitlines():
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if isinstance(row, dict):
            rows.append(row)
    return rows, offset + end + 1


def read_all_stats(run_dir: str) -> list[dict[str, Any]]:
    return read_new_stats(Path(run_dir) / "stats.jsonl", 0)[0]


def snapshot_files(run_dir: str) -> Iterator[tuple[int, Path]]:
    """(kimg, path) of every complete snapshot (temporary files never match the pattern)."""
    try:
        names = os.listdir(run_dir)
    except OSError:
        return
    for name in sorted(names):
        if m := SNAPSHOT_RE.match(name):
            yield int(m.group(1)), Path(run_dir) / name


def latest_samples(run_dir: str) -> Path | None:
    grids = sorted(Path(run_dir).glob("samples-*.png")) if run_dir else []
    return grids[-1] if grids else None


def tail(path: Path, lines: int = 40, max_bytes: int = 64 * 1024) -> str:
    """The last lines of a log file (read from the end, so a huge log costs nothing)."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - max_bytes))
            data = f.read()
    except OSError:
        return ""
    return "\n".join(data.decode(errors="replace").splitlines()[-lines:])
