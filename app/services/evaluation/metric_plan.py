"""What a metric run can do on this machine, asked from the trainer before anything starts
(`python -m trainer metrics plan`): which metrics can run (weights present) and why not,
whether there is a GPU, and measured per-stage times, from which the form takes a default
sample count that fits the device and an estimate for any choice.

Measuring starts a heavy process (the networks are built and timed), so it is single-flight
per plan (concurrent askers wait for the one measurement) and takes a place in the bounded
"metric plan measurement" queue with its per-user limit (app/services/limits.py).

Estimates are calibrated on this machine's history: the median ratio of real to estimated
time of earlier completed runs on the same device scales every new estimate (the probe
measures the networks, not set-up, contention or the machine's other work).
"""

from __future__ import annotations

import json
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.models import MetricRun, Snapshot
from app.services import limits
from app.settings import Settings
from app.trainer_client import calls, commands

PLAN_TTL_S = 600  # a plan is measured again after this (the machine's load changes)
PLAN_TIMEOUT_S = 180
BUDGET_S = 300  # the default sample count is the largest whose estimate fits this
FALLBACK_NUM = 1000
_plans: dict[tuple, tuple[float, dict]] = {}  # (snapshot file, mtime, data, ...) -> plan
_measuring = limits.SingleFlight()
QUEUE = "metric plan measurement"


@dataclass
class MetricPlan:
    """The trainer's plan for one snapshot (None with `error` when it could not be asked)."""

    plan: dict[str, Any] | None
    error: str | None = None
    factor: float = 1.0  # real / estimated time on this device, from history
    calibrated_from: int = 0
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def cuda(self) -> bool:
        return bool(self.plan and self.plan.get("cuda_available"))

    @property
    def device(self) -> str:
        return (self.plan or {}).get("device", "cpu")

    @property
    def suggested_num(self) -> int:
        return int((self.plan or {}).get("suggested_num") or FALLBACK_NUM)

    def runnable(self, metric: str) -> bool:
        return (self.plan or {}).get("metrics", {}).get(metric, {}).get("runnable", True)

    def reason(self, metric: str) -> str | None:
        return (self.plan or {}).get("metrics", {}).get(metric, {}).get("reason")

    def note(self, metric: str) -> str | None:
        return (self.plan or {}).get("metrics", {}).get(metric, {}).get("note")

    def estimate(self, metrics: list[str], num: int) -> float | None:
        """Seconds for these metrics at `num` samples (calibrated), or None without a plan."""
        if not self.plan or not self.plan.get("estimates"):
            return None
        users = self.plan["stage_users"]
        wanted = {m for m in metrics if self.runnable(m)}

        def total(point: dict) -> float:
            return sum(s for stage, s in point["parts"].items() if wanted & set(users[stage]))

        ladder = sorted((int(n), total(e)) for n, e in self.plan["estimates"].items())
        below = [p for p in ladder if p[0] <= num] or ladder[:1]
        above = [p for p in ladder if p[0] >= num] or ladder[-1:]
        (n0, t0), (n1, t1) = below[-1], above[0]
        if n1 == n0:
            seconds = t0 * num / n0 if num > n0 else t0
        else:
            seconds = t0 + (t1 - t0) * (num - n0) / (n1 - n0)
        return seconds * self.factor


def calibration(session: Session, device: str, last: int = 10) -> tuple[float, int]:
    """(median real / estimated time, runs it is based on) of the newest completed runs on
    `device`; (1.0, 0) before any."""
    runs = session.scalars(
        select(MetricRun).where(MetricRun.state == "completed").order_by(MetricRun.id.desc())
    ).all()
    ratios = []
    for run in runs:
        r = run.result or {}
        est, real = r.get("estimate_s"), (r.get("timings") or {}).get("total_s")
        ran_on = str((r.get("options") or {}).get("device", ""))
        if est and real and est > 0 and ran_on.startswith(device):
            ratios.append(real / est)
        if len(ratios) >= last:
            break
    if not ratios:
        return 1.0, 0
    return min(max(statistics.median(ratios), 0.5), 10.0), len(ratios)


def _ask(settings: Settings, snapshot: str, data: str) -> dict[str, Any]:
    python = commands.python_for(settings.python_executable)
    argv = [python, "-m", "trainer", "metrics", "plan", "--snapshot", snapshot, "--data", data,
            "--device", "auto", "--budget-s", str(BUDGET_S)]  # fmt: skip
    if settings.metrics_extractor_module:
        argv += ["--extractor-module", settings.metrics_extractor_module]
    if settings.metrics_feature_extractor:
        argv += ["--feature-extractor", settings.metrics_feature_extractor]
    out = calls.run(argv, PLAN_TIMEOUT_S, "measuring this machine for the metrics")
    lines = [ln for ln in out.splitlines() if ln.strip()]
    return json.loads(lines[-1])


def _folder_mtime(plan: dict[str, Any]) -> int | None:
    try:
        return Path(plan.get("weights_folder") or "").stat().st_mtime_ns
    except OSError:
        return None


def _weights_changed(cached: tuple[float, dict]) -> bool:
    """Weight files copied in (or removed) since the plan: ask again at once."""
    plan = cached[1]
    return plan.get("weights_folder") is not None and _folder_mtime(plan) != plan.get("_mtime")


def plan_for(
    session: Session, settings: Settings, snap: Snapshot, data: Path, user_id: int = 0
) -> MetricPlan:
    """The plan for `snap` against `data`, measured at most every PLAN_TTL_S seconds, once
    at a time; TooManyRequests when the measurement queue or this user is at its limit."""
    try:
        stat = Path(snap.path).stat()
    except OSError:
        return MetricPlan(None, "the snapshot file is missing")
    key = (snap.path, stat.st_mtime_ns, str(data), settings.metrics_extractor_module,
           settings.metrics_feature_extractor)  # fmt: skip
    cached = _plans.get(key)
    if cached is None or time.monotonic() - cached[0] > PLAN_TTL_S or _weights_changed(cached):
        try:
            cached = _measuring.run(key, lambda: _measure(settings, key, snap.path, data, user_id))
        except (calls.TrainerCallFailed, ValueError, IndexError) as exc:
            return MetricPlan(None, f"could not measure this machine: {exc}")
    plan = cached[1]
    factor, n = calibration(session, plan.get("device", "cpu"))
    return MetricPlan(plan, factor=factor, calibrated_from=n)


def _measure(
    settings: Settings, key: tuple, snapshot: str, data: Path, user_id: int
) -> tuple[float, dict]:
    with limits.shared_queue(QUEUE, settings).place(user_id):
        asked = _ask(settings, snapshot, str(data))
    asked["_mtime"] = _folder_mtime(asked)
    _plans[key] = (time.monotonic(), asked)
    return _plans[key]
