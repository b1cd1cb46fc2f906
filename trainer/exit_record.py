"""How a training run ended, told twice: by the exit code and by `exit.json` in its run folder.

The exit code is what a parent process or a scheduler sees (SLURM's ExitCode); the record is
what is left when nobody was there to see it (the app restarted, the scheduler forgot the job,
torchrun replaced its workers' codes with its own). `exit.json` is written last, by rank 0.
"""

from __future__ import annotations

import json
import os
import time

EXIT_DONE = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_STOPPED = 4  # SIGTERM/SIGINT before the run's kimg: snapshot written, `--resume latest`
RECORD = "exit.json"
_REASONS = {EXIT_DONE: "done", EXIT_ERROR: "error", EXIT_USAGE: "usage", EXIT_STOPPED: "stopped"}


def write(run_dir: str, code: int, signal_name: str = "", kimg: float | None = None) -> None:
    """Write the record atomically; a full disk or a vanished folder must not change the code."""
    rec = {
        "code": code,
        "reason": _REASONS.get(code, "error"),
        "signal": signal_name or None,
        "kimg": kimg,
        "time": time.time(),
        "host": os.uname().nodename,
    }
    tmp = os.path.join(run_dir, RECORD + ".tmp")
    try:
        with open(tmp, "w") as f:
            json.dump(rec, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, os.path.join(run_dir, RECORD))
    except OSError:
        pass


def clear(run_dir: str) -> None:
    """A new launch of the run starts without the former launch's record."""
    try:
        os.remove(os.path.join(run_dir, RECORD))
    except OSError:
        pass
