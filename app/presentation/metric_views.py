"""What the API and the pages show of metric runs: a run as JSON, the headline numbers of a
result, the newest number of each metric for a snapshot, and a job's FID-over-kimg points."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import replace
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.models import ACTIVE_METRIC_STATES, MetricRun, Snapshot
from app.presentation.server_paths import without_server_paths
from app.services.evaluation.metric_plan import MetricPlan
from app.services.evaluation.metric_runs import ALL_METRICS, list_runs

# The headline keys each metric contributes (None when a run did not compute it).
HEADLINE_KEYS = {
    "fid": ("fid", "fid_relative", "fid_real_halves"),
    "kid": ("kid", "kid_std"),
    "pr": ("precision", "recall"),
    "ppl": ("ppl", "ppl_variant", "ppl_label"),
    "memorization": ("copy_share", "num_copies", "copy_threshold"),
    "c2st": ("c2st_accuracy", "c2st_ci95", "c2st_p_value"),
}
LABELS = {
    "fid": "FID", "kid": "KID", "pr": "precision / recall", "ppl": "PPL",
    "memorization": "memorisation", "c2st": "C2ST",
}  # fmt: skip


def _iso(dt: datetime | None) -> str | None:
    return dt.isoformat() + "Z" if dt else None


def _epsilon(eps: float) -> str:
    mantissa, _, exponent = f"{eps:.0e}".partition("e")
    return f"{mantissa}e{int(exponent)}" if eps < 0.01 else f"{eps:g}"


def ppl_label(ppl: Mapping[str, Any]) -> str:
    """The variant in words, e.g. 'PPL (W, end-points, ε=1e-4, LPIPS-VGG16)'."""
    sampling = "end-points" if ppl.get("sampling", "end") == "end" else "full path"
    similarity = str(ppl.get("similarity") or "")
    if similarity.lower().startswith("lpips-vgg16"):
        similarity = "LPIPS-VGG16"
    eps = ppl.get("epsilon")
    parts = [str(ppl.get("space", "w")).upper(), sampling]
    parts += [f"ε={_epsilon(eps)}"] if isinstance(eps, int | float) else []
    parts += [similarity] if similarity else []
    return f"PPL ({', '.join(parts)})"


def headline(result: Mapping[str, Any] | None) -> dict[str, Any]:
    """The numbers a table row shows, flat; metrics the run did not compute are None."""
    m = (result or {}).get("metrics") or {}
    fid, kid, pr = m.get("fid") or {}, m.get("kid") or {}, m.get("pr") or {}
    ppl, mem, c2st = m.get("ppl") or {}, m.get("memorization") or {}, m.get("c2st") or {}
    return {
        "fid": fid.get("value"), "fid_relative": fid.get("relative"),
        "fid_real_halves": fid.get("real_halves"),
        "kid": kid.get("mean"), "kid_std": kid.get("std"),
        "precision": pr.get("precision"), "recall": pr.get("recall"),
        "ppl": ppl.get("mean"), "ppl_variant": ppl.get("variant"),
        "ppl_label": ppl_label(ppl) if ppl else None,
        "copy_share": mem.get("copy_share"), "num_copies": mem.get("num_copies"),
        "copy_threshold": mem.get("copy_threshold_ncc"),
        "c2st_accuracy": c2st.get("accuracy"), "c2st_ci95": c2st.get("ci95"),
        "c2st_p_value": c2st.get("p_value"),
    }  # fmt: skip


def features_used(result: Mapping[str, Any] | None) -> list[dict[str, str]]:
    """Per metric, the features it really used: the trainer lists an extractor for every
    metric it planned, so memorisation on pixel NCC only (no Inception weights), a failed and a
    skipped metric are named as such instead of with an extractor that never ran."""
    result = result or {}
    env = result.get("environment") or {}
    metrics, errors = result.get("metrics") or {}, result.get("errors") or {}
    rows = []
    for metric, fe in (env.get("feature_extractors") or {}).items():
        used = f"{fe.get('name')} / {fe.get('layer')}"
        if metric in errors:
            used = "none: the metric failed"
        elif metric == "memorization" and not (metrics.get(metric) or {}).get("feature_extractor"):
            used = "none: pixel NCC only (the Inception weights are missing)"
        rows.append({"metric": metric, "used": used})
    for metric, why in (result.get("skipped") or {}).items():
        rows.append({"metric": metric, "used": f"none: skipped, {why}"})
    return rows


def run_dict(run: MetricRun, admin: bool) -> dict[str, Any]:
    """A run as the API returns it: state, options, progress, and the result when there is one;
    server paths and the pid for admins only."""
    out = _run_dict(run)
    return out if admin else without_server_paths(out)


def _run_dict(run: MetricRun) -> dict[str, Any]:
    result = run.result
    return {
        "id": run.id, "snapshot_id": run.snapshot_id, "state": run.state,
        "cancelling": run.state == "running" and run.cancel_requested_at is not None,
        "metrics": run.metrics, "options": run.options, "pid": run.pid,
        "progress": run.progress, "error": run.error, "exit_code": run.exit_code,
        "created_by": run.created_by.username if run.created_by else None,
        "created_at": _iso(run.created_at), "started_at": _iso(run.started_at),
        "finished_at": _iso(run.finished_at),
        "cancel_requested_at": _iso(run.cancel_requested_at), "run_dir": run.run_dir,
        "estimate_s": (result or {}).get("estimate_s") or (run.options or {}).get("estimate_s"),
        "skipped": (result or {}).get("skipped") or {},
        "errors": (result or {}).get("errors") or {},
        "headline": headline(result) if result else None, "result": result,
        "features": features_used(result),
    }  # fmt: skip


def latest(runs: Iterable[MetricRun]) -> dict[str, Any] | None:
    """Per metric, the number from the newest completed run that computed it (runs: newest
    first); `runs` says which run each metric came from. None before any completed run."""
    out: dict[str, Any] = {}
    sources: dict[str, int] = {}
    for run in runs:
        if run.state != "completed" or not run.result:
            continue
        numbers = headline(run.result)
        for metric, keys in HEADLINE_KEYS.items():
            if metric not in sources and metric in (run.result.get("metrics") or {}):
                sources[metric] = run.id
                out.update({k: numbers[k] for k in keys})
                out.setdefault("num", (run.result.get("options") or {}).get("num"))
    if not sources:
        return None
    return {**{k: None for keys in HEADLINE_KEYS.values() for k in keys}, **out, "runs": sources}


def metrics_of_snapshot(session: Session, snapshot_id: int, admin: bool) -> dict[str, Any]:
    """GET /api/snapshots/{id}/metrics: every run (newest first) and the latest numbers."""
    runs = list_runs(session, snapshot_id)
    return {"snapshot_id": snapshot_id, "runs": [run_dict(r, admin) for r in runs],
            "latest": latest(runs)}  # fmt: skip


def fid_points(session: Session, job_id: int) -> list[tuple[float, float]]:
    """(kimg, FID) of the job's snapshots from completed metric runs; the newest run per
    snapshot, for the job page's FID-over-kimg chart."""
    q = (
        select(Snapshot.id, Snapshot.kimg, MetricRun.result)
        .join(MetricRun, MetricRun.snapshot_id == Snapshot.id)
        .where(Snapshot.job_id == job_id, MetricRun.state == "completed")
        .order_by(MetricRun.id)
    )
    points: dict[int, tuple[float, float]] = {}
    for snap_id, kimg, result in session.execute(q):
        fid = headline(result)["fid"]
        if isinstance(fid, int | float):
            points[snap_id] = (float(kimg), float(fid))
    return sorted(points.values())


def form_context(plan: MetricPlan | None, form: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The start form from the plan: metrics that cannot run greyed out with the reason, a
    sample count that fits the device, devices this machine has, and the estimate."""
    if plan is None:
        return {"metric_plan": None, "metric_form": {**(form or {})}}
    can = [m for m in ALL_METRICS if plan.runnable(m)]
    values = {"metrics": can, "num": plan.suggested_num, "device": "auto", **(form or {})}
    metrics = [m for m in values["metrics"] if m in ALL_METRICS]
    try:
        num = int(float(values["num"]))
    except (TypeError, ValueError):
        num = plan.suggested_num
    estimate = plan.estimate(metrics, num)
    return {
        "metric_plan": plan,
        "metric_form": values,
        "metric_devices": ("auto", "cpu", "cuda") if plan.cuda else ("auto", "cpu"),
        "metric_estimate": None if estimate is None else estimate,
    }


def panel_context(
    session: Session,
    snap: Snapshot,
    form: Mapping[str, Any] | None = None,
    error: str | None = None,
    plan: MetricPlan | None = None,
    admin: bool = False,
) -> dict[str, Any]:
    """The snapshot page's Metrics section: the form (loaded on its own when there is no plan
    yet, since measuring the machine takes seconds), live runs, results and failures."""
    runs = list_runs(session, snap.id)
    views = [run_dict(r, admin) for r in runs]
    completed = [v for v in views if v["state"] == "completed"]
    return {
        "metric_runs": views,
        "metric_active": [v for v in views if v["state"] in ACTIVE_METRIC_STATES],
        "metric_completed": completed,
        "metric_newest": completed[0] if completed else None,
        "metric_failures": [v for v in views if v["state"] in ("failed", "cancelled")],
        **form_context(plan, form),
        "metric_error": error,
        "metric_labels": LABELS,
        "metric_all": ALL_METRICS,
    }


def plan_for_viewer(plan: MetricPlan, admin: bool) -> MetricPlan:
    """The plan as a reviewer may see it: reasons and errors without the weights folder."""
    if admin:
        return plan
    shown = without_server_paths(plan.plan)
    return replace(plan, plan=shown, error=without_server_paths(plan.error))
