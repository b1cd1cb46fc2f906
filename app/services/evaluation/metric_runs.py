"""Metric runs on snapshots: validate a request, queue it (once), cancel it, look runs up.

A run is `python -m trainer metrics` in the background; the job monitor's thread starts and
follows it (app/services/metric_monitor.py), so no web request ever waits for a computation.
Like the job services, these functions commit and change states by compare-and-set.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, selectinload

from app.errors import Conflict, InvalidInput, NotFound
from app.models import AuditEvent, MetricRun, Snapshot, User
from app.services import background_runs, limits
from app.services.evaluation.metric_plan import MetricPlan, plan_for  # noqa: F401 (routes)
from app.services.training.snapshots import get_snapshot
from app.settings import Settings

ALL_METRICS = ("fid", "kid", "pr", "ppl", "memorization", "c2st")  # the CLI's canonical order
ALIASES = {"memorisation": "memorization", "precision_recall": "pr", "prc": "pr"}
DEVICES = ("auto", "cpu", "cuda")
DEFAULT_NUM = 10000
MAX_NUM = 200_000
# Optional advanced options: name -> (type, lowest, highest); passed to the CLI when given.
ADVANCED: dict[str, tuple[type, float, float]] = {
    "seed": (int, 0, 2**31 - 1),
    "trunc": (float, -2.0, 2.0),
    "kid_subsets": (int, 1, 1000),
    "c2st_epochs": (int, 1, 200),
    "ppl_num": (int, 2, MAX_NUM),
}
IGNORED = ("csrf_token",)


def _metrics(value: Any) -> list[str]:
    names = value.split(",") if isinstance(value, str) else value
    if not isinstance(names, list | tuple) or not all(isinstance(n, str) for n in names):
        raise InvalidInput("metrics: must be a list of metric names")
    wanted = {ALIASES.get(n.strip().lower(), n.strip().lower()) for n in names if n.strip()}
    unknown = sorted(wanted - set(ALL_METRICS))
    if unknown:
        raise InvalidInput(
            f"metrics: unknown metric {', '.join(map(repr, unknown))}; "
            f"choose from {', '.join(ALL_METRICS)}"
        )
    if not wanted:
        raise InvalidInput("metrics: choose at least one metric")
    return [m for m in ALL_METRICS if m in wanted]


def _number(raw: Mapping[str, Any], key: str, kind: type, lo: float, hi: float) -> int | float:
    value = raw[key]
    if isinstance(value, str):  # a form field
        try:
            value = float(value.strip())
        except ValueError:
            raise InvalidInput(f"{key}: {raw[key]!r} is not a number") from None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise InvalidInput(f"{key}: must be a number")
    if kind is int and value != int(value):
        raise InvalidInput(f"{key}: must be a whole number")
    if not lo <= value <= hi:
        raise InvalidInput(f"{key}: must be between {lo:g} and {hi:g}, not {value:g}")
    return kind(value)


def validate_request(
    raw: Mapping[str, Any], default_num: int = DEFAULT_NUM, cuda: bool | None = None
) -> tuple[list[str], dict[str, Any]]:
    """The metrics (canonical order) and the typed options of a start request, or a 422.
    `cuda` False (this machine has no GPU) refuses device "cuda"."""
    unknown = sorted(set(raw) - {"metrics", "num", "device", *ADVANCED, *IGNORED})
    if unknown:
        raise InvalidInput(f"unknown field(s): {', '.join(unknown)}")
    metrics = _metrics(raw.get("metrics", list(ALL_METRICS)))
    given = {k: v for k, v in raw.items() if v not in (None, "")}
    num = _number(given, "num", int, 2, MAX_NUM) if "num" in given else default_num
    device = str(given.get("device", "auto"))
    if device not in DEVICES:
        raise InvalidInput(f"device: must be one of {', '.join(DEVICES)}, not {device!r}")
    if device == "cuda" and cuda is False:
        raise InvalidInput("device: this machine has no GPU; choose cpu (or auto)")
    opts: dict[str, Any] = {"num": num, "device": device}
    for key, (kind, lo, hi) in ADVANCED.items():
        if key in given:
            opts[key] = _number(given, key, kind, lo, hi)
    return metrics, opts


def data_zip_for(snap: Snapshot) -> Path:
    """The dataset zip the snapshot was trained on: the job's own, else its version's export."""
    candidates = [snap.job.options.get("data"), snap.job.dataset.zip_path]
    for path in candidates:
        if path and Path(path).is_file():
            return Path(path).resolve()
    raise Conflict(
        f"the dataset zip of snapshot {snap.id} (dataset version {snap.job.dataset_id}) is "
        "missing; export that dataset version again, then start the metrics"
    )


def _request_key(snapshot_id: int, metrics: list[str], opts: Mapping[str, Any]) -> str:
    return background_runs.request_key(
        {"snapshot": snapshot_id, "metrics": metrics, "options": opts}
    )


def _run_folder(snap: Snapshot, settings: Settings, run_id: int) -> Path:
    return background_runs.run_folder(snap, settings, "metrics", run_id)


def _active_twin(session: Session, snapshot_id: int, key: str) -> MetricRun | None:
    return background_runs.active_twin(session, MetricRun, snapshot_id, key)


def plan_of(session: Session, settings: Settings, snapshot_id: int, user_id: int = 0) -> MetricPlan:
    """What a run on this snapshot can do here (weights, GPU, timings): see metric_plan."""
    snap = get_snapshot(session, snapshot_id)
    return plan_for(session, settings, snap, data_zip_for(snap), user_id)


def _check_plan(metrics: list[str], plan: MetricPlan) -> None:
    """A request none of whose metrics can run here is refused, with each one's reason."""
    if plan.plan and not any(plan.runnable(m) for m in metrics):
        reasons = "; ".join(f"{m}: {plan.reason(m)}" for m in metrics)
        raise InvalidInput(f"none of these metrics can run on this machine ({reasons})")


def start_run(
    session: Session,
    settings: Settings,
    snapshot_id: int,
    raw: Mapping[str, Any],
    user: User,
    plan: MetricPlan | None = None,
) -> tuple[MetricRun, bool]:
    """Queue a run (the monitor starts it when a slot is free); (run, created). The same
    request while an identical run is queued or running returns that run instead. Without a
    sample count it takes the plan's, which fits the device's time budget."""
    snap = get_snapshot(session, snapshot_id)
    if not Path(snap.path).is_file():
        raise Conflict(f"snapshot {snapshot_id}'s file is missing ({Path(snap.path).name})")
    plan = plan or plan_for(session, settings, snap, data_zip_for(snap))
    cuda = plan.cuda if plan.plan else None
    metrics, opts = validate_request(raw, plan.suggested_num, cuda)
    _check_plan(metrics, plan)
    estimate = plan.estimate(metrics, opts["num"])
    if estimate is not None:  # without a plan nothing is known beyond the bounds on num
        limits.check_time_budget(settings, estimate, "this metric run", "num or the metrics")
    opts["data"] = str(data_zip_for(snap))
    key = _request_key(snapshot_id, metrics, opts)
    if twin := _active_twin(session, snapshot_id, key):
        return twin, False
    shown = {**opts, "estimate_s": None if estimate is None else round(estimate, 1)}
    run = MetricRun(snapshot_id=snapshot_id, state="queued", metrics=metrics, options=shown,
                    request_key=key, created_by_id=user.id)  # fmt: skip
    session.add(run)
    try:
        session.flush()
    except IntegrityError:  # a concurrent identical request won the race
        session.rollback()
        if twin := _active_twin(session, snapshot_id, key):
            return twin, False
        raise
    run.run_dir = str(_run_folder(snap, settings, run.id))
    detail = {"snapshot_id": snapshot_id, "metrics": metrics, **opts}
    session.add(AuditEvent(user_id=user.id, action="metrics.start",
                           target=f"metric_run:{run.id}", detail=detail))  # fmt: skip
    session.commit()
    return run, True


def get_run(session: Session, run_id: int) -> MetricRun:
    run = session.get(MetricRun, run_id, populate_existing=True)
    if run is None:
        raise NotFound(f"metric run {run_id} does not exist")
    return run


def list_runs(session: Session, snapshot_id: int) -> list[MetricRun]:
    """Every run of a snapshot, newest first."""
    get_snapshot(session, snapshot_id)
    q = (
        select(MetricRun)
        .options(selectinload(MetricRun.created_by))
        .where(MetricRun.snapshot_id == snapshot_id)
        .order_by(MetricRun.id.desc())
        .execution_options(populate_existing=True)
    )
    return list(session.scalars(q))


def cancel_run(session: Session, run_id: int, user: User) -> MetricRun:
    """A queued run is cancelled at once; a running one gets SIGTERM and the follower records
    'cancelled' (app/services/background_runs.py). Repeats are harmless."""
    return background_runs.cancel_run(
        session, get_run, run_id, user, "metric run", "metrics.cancel"
    )
