"""Utility runs on snapshots: validate a request, queue it (once), cancel it, look runs up.

A run is `python -m trainer utility` in the background, started and followed from the job
monitor's thread (app/services/utility/monitor.py) exactly like a metric run. The test set is
another dataset version that must not share a patient with the snapshot's training version.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.errors import Conflict, InvalidInput, NotFound
from app.models import AuditEvent, Snapshot, User, UtilityRun
from app.services import background_runs, limits
from app.services.curation.datasets import check_disjoint, dataset_zip, get_dataset
from app.services.evaluation.metric_runs import data_zip_for
from app.services.training.snapshots import get_snapshot
from app.settings import Settings

ACTIVE = ("queued", "running")
TASKS = ("segmentation", "classification")
DEVICES = ("auto", "cpu", "cuda")
# More optimiser steps per second than any device gives the downstream U-Net / classifier
# (a small network on a GPU does tens): total steps over this is a floor of a run's time.
FASTEST_STEPS_PER_S = 100.0
DEFAULTS = {"arms": "real,real+aug,real+syn:1,real+syn:4,syn", "fractions": "0.25,0.5,1",
            "seeds": 3, "steps": 300, "device": "auto"}  # fmt: skip
_ARM = re.compile(r"^(real|real\+aug|real\+syn:\d+(\.\d+)?|syn(:\d+(\.\d+)?)?)$")
IGNORED = ("csrf_token",)


def _int(raw: Mapping[str, Any], key: str, lo: int, hi: int) -> int:
    value = raw[key]
    try:
        number = int(str(value).strip()) if not isinstance(value, int) else value
    except ValueError:
        raise InvalidInput(f"{key}: {value!r} is not a whole number") from None
    if isinstance(value, bool) or not lo <= number <= hi:
        raise InvalidInput(f"{key}: must be a whole number from {lo} to {hi}")
    return number


def _arms(value: Any) -> str:
    names = value if isinstance(value, list) else str(value).split(",")
    arms = [str(a).strip().lower() for a in names if str(a).strip()]
    bad = [a for a in arms if not _ARM.match(a)]
    if bad or not arms:
        raise InvalidInput(
            f"arms: unknown arm {', '.join(bad) or '(none)'}; use real, real+aug, "
            "real+syn:K (K synthetic per real image), syn or syn:K"
        )
    return ",".join(dict.fromkeys(arms))


def _fractions(value: Any) -> str:
    parts = value if isinstance(value, list) else str(value).split(",")
    try:
        fr = sorted({float(str(v).strip()) for v in parts if str(v).strip()})
    except ValueError:
        raise InvalidInput(f"fractions: {value!r} is not a list of numbers") from None
    if not fr or fr[0] <= 0 or fr[-1] > 1:
        raise InvalidInput("fractions: numbers in (0, 1], e.g. 0.25,0.5,1")
    return ",".join(f"{f:g}" for f in fr)


def validate_request(raw: Mapping[str, Any]) -> tuple[str, int, dict[str, Any]]:
    """(task, test dataset id, typed options) of a start request, or a 422 naming the field."""
    known = {"task", "test_dataset_id", "arms", "fractions", "seeds", "steps", "res", "device"}
    unknown = sorted(set(raw) - known - set(IGNORED))
    if unknown:
        raise InvalidInput(f"unknown field(s): {', '.join(unknown)}")
    given = {k: v for k, v in raw.items() if v not in (None, "")}
    task = str(given.get("task", "segmentation"))
    if task not in TASKS:
        raise InvalidInput(f"task: must be one of {', '.join(TASKS)}, not {task!r}")
    if "test_dataset_id" not in given:
        raise InvalidInput("test_dataset_id: choose the held-out dataset version to test on")
    test_id = _int(given, "test_dataset_id", 1, 2**31 - 1)
    opts: dict[str, Any] = {
        "arms": _arms(given.get("arms", DEFAULTS["arms"])),
        "fractions": _fractions(given.get("fractions", DEFAULTS["fractions"])),
        "seeds": _int(given, "seeds", 1, 20) if "seeds" in given else DEFAULTS["seeds"],
        "steps": _int(given, "steps", 1, 100_000) if "steps" in given else DEFAULTS["steps"],
        "device": str(given.get("device", DEFAULTS["device"])),
    }
    if opts["device"] not in DEVICES:
        raise InvalidInput(f"device: must be one of {', '.join(DEVICES)}")
    if "res" in given:
        opts["res"] = _int(given, "res", 16, 1024)
        if opts["res"] & (opts["res"] - 1):
            raise InvalidInput("res: must be a power of two")
    return task, test_id, opts


def training_steps(opts: Mapping[str, Any]) -> int:
    """Optimiser steps of a whole run: every arm × fraction × seed trains `steps` steps."""
    arms, fractions = len(opts["arms"].split(",")), len(opts["fractions"].split(","))
    return arms * fractions * int(opts["seeds"]) * int(opts["steps"])


def check_budget(settings: Settings, opts: Mapping[str, Any]) -> None:
    """422 for a run that cannot finish within MEDSYNTH_MAX_JOB_HOURS even at
    FASTEST_STEPS_PER_S (a lower bound of its time: the real rate is lower, above all on a CPU)."""
    steps = training_steps(opts)
    limits.check_time_budget(
        settings, steps / FASTEST_STEPS_PER_S, f"this run ({steps:,} training steps)",
        "the arms, fractions, seeds or steps",
    )  # fmt: skip


def _request_key(snapshot_id: int, task: str, test_id: int, opts: Mapping[str, Any]) -> str:
    doc = {"snapshot": snapshot_id, "task": task, "test": test_id, "options": opts}
    return background_runs.request_key(doc)


def _run_folder(snap: Snapshot, settings: Settings, run_id: int) -> Path:
    return background_runs.run_folder(snap, settings, "utility", run_id)


def _active_twin(session: Session, snapshot_id: int, key: str) -> UtilityRun | None:
    return background_runs.active_twin(session, UtilityRun, snapshot_id, key)


def _check_data(session: Session, snap: Snapshot, task: str, test_id: int):
    """The training and test versions, refused when they share a patient or lack masks."""
    train = snap.job.dataset
    test = get_dataset(session, test_id)
    check_disjoint(train, test)  # the generator's training data is the training version
    if task == "segmentation":
        lacking = [d for d in (train, test) if not getattr(d, "masks", False)]
        if lacking:
            raise Conflict(f"segmentation needs masks: dataset version {lacking[0].id} was "
                           "frozen without them; freeze it again with masks")  # fmt: skip
    return train, test


def start_run(session: Session, settings: Settings, snapshot_id: int, raw: Mapping[str, Any],
              user: User) -> tuple[UtilityRun, bool]:  # fmt: skip
    """Queue a run (the monitor starts it); (run, created). The same request while an
    identical run is active returns that run instead."""
    snap = get_snapshot(session, snapshot_id)
    task, test_id, opts = validate_request(raw)
    check_budget(settings, opts)
    if not Path(snap.path).is_file():
        raise Conflict(f"snapshot {snapshot_id}'s file is missing ({Path(snap.path).name})")
    train, test = _check_data(session, snap, task, test_id)
    opts["train_zip"] = str(data_zip_for(snap))
    opts["test_zip"] = str(dataset_zip(session, settings, test.id))
    key = _request_key(snapshot_id, task, test_id, opts)
    if twin := _active_twin(session, snapshot_id, key):
        return twin, False
    run = UtilityRun(snapshot_id=snapshot_id, train_dataset_id=train.id, test_dataset_id=test.id,
                     task=task, state="queued", options=opts, request_key=key,
                     created_by_id=user.id)  # fmt: skip
    session.add(run)
    try:
        session.flush()
    except IntegrityError:  # a concurrent identical request won the race
        session.rollback()
        if twin := _active_twin(session, snapshot_id, key):
            return twin, False
        raise
    run.run_dir = str(_run_folder(snap, settings, run.id))
    detail = {"snapshot_id": snapshot_id, "task": task, "test_dataset_id": test.id, **opts}
    session.add(AuditEvent(user_id=user.id, action="utility.start",
                           target=f"utility_run:{run.id}", detail=detail))  # fmt: skip
    session.commit()
    return run, True


def get_run(session: Session, run_id: int) -> UtilityRun:
    run = session.get(UtilityRun, run_id, populate_existing=True)
    if run is None:
        raise NotFound(f"utility run {run_id} does not exist")
    return run


def list_runs(session: Session, snapshot_id: int) -> list[UtilityRun]:
    """Every run of a snapshot, newest first."""
    get_snapshot(session, snapshot_id)
    q = select(UtilityRun).where(UtilityRun.snapshot_id == snapshot_id)
    q = q.order_by(UtilityRun.id.desc()).execution_options(populate_existing=True)
    return list(session.scalars(q))


def cancel_run(session: Session, run_id: int, user: User) -> UtilityRun:
    """A queued run is cancelled at once; a running one gets SIGTERM and the follower records
    'cancelled' (app/services/background_runs.py). Repeats are harmless."""
    return background_runs.cancel_run(
        session, get_run, run_id, user, "utility run", "utility.cancel"
    )
