"""This machine's measured training speed, per network and device (`trainer info speed`).

A duration estimate scaled from a constant was several times off on a new machine until two
jobs had calibrated it. A few real training steps of the very network a job would build are
not: measured once per network, batch, precision and device (seconds on the CPU preset), kept
in the speed_probes table, and used by every later estimate of the same network.
"""

from __future__ import annotations

import os
from typing import Any

from sqlalchemy.orm import Session

from app.models import SpeedProbe, utcnow
from app.services import limits
from app.trainer_client import calls, commands

# Flags that change the length or the bookkeeping of a run, not the cost of one step.
_NOT_SPEED = {"--kimg", "--snap", "--seed", "--tick", "--metrics-every"}


def train_flags(opts: dict[str, Any]) -> list[str]:
    """The job's `train` flags that decide the cost of a step (no data, no run folder)."""
    argv = commands.train_argv("python", {**opts, "data": "-"}, "-", float(opts["kimg"]), None)
    flags = argv[argv.index("--outdir") + 2 :]
    out: list[str] = []
    skip = False
    for i, flag in enumerate(flags):
        if skip:
            skip = False
        elif flag in _NOT_SPEED and i + 1 < len(flags):
            skip = True
        else:
            out.append(flag)
    return out


def probe_key(opts: dict[str, Any]) -> str:
    """Names the network, batch, precision and device, and this machine's CPU count."""
    return " ".join(train_flags(opts)) + f" cpus={os.cpu_count()}"


def cached(session: Session, opts: dict[str, Any]) -> SpeedProbe | None:
    """The stored measurement for the job's network here, if one was taken."""
    try:
        return session.get(SpeedProbe, probe_key(opts))
    except (KeyError, TypeError, ValueError):
        return None


_measuring = limits.SingleFlight()  # one probe per network at a time; others await it
_queue = limits.WorkQueue("machine speed measurement", 1, 4, 4)  # bounded, whoever asks


def measure(session: Session, opts: dict[str, Any]) -> SpeedProbe:
    """Measure the job's network on this machine now (a few training steps) and keep it.

    Concurrent asks for the same network share one probe; at most one probe runs and four
    wait (a 429 beyond), so the form cannot start unbounded trainer processes."""
    python = commands.python_for("")
    key = probe_key(opts)

    def probe() -> dict[str, Any]:
        with _queue.place(0):
            return calls.speed(python, train_flags(opts))

    out = _measuring.run(key, probe)
    row = session.get(SpeedProbe, key) or SpeedProbe(key=key)
    row.device, row.sec_per_kimg = str(out["device"]), float(out["sec_per_kimg"])
    row.detail, row.measured_at = out, utcnow()
    try:
        session.add(row)
        session.commit()
    except Exception:
        session.rollback()
        raise
    return row
