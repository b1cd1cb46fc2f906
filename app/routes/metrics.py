"""Metric runs: the JSON API, and the snapshot page's Metrics section (htmx partials)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, JSONResponse, RedirectResponse, Response

from app.deps import AdminUser, CurrentUser, SessionDep, SettingsDep, blind
from app.errors import DomainError, InvalidInput
from app.presentation import metric_views as views
from app.schemas.media import file_response
from app.schemas.metrics import MetricPlanOut, MetricRunIn, MetricRunOut, SnapshotMetricsOut
from app.services.evaluation import metric_pairs
from app.services.evaluation import metric_runs as svc
from app.services.training.snapshots import get_snapshot
from app.templating import is_htmx, render

router = APIRouter()


def _wake(request: Request) -> None:
    """Let the monitor start a queued run now rather than at its next tick."""
    if monitor := getattr(request.app.state, "monitor", None):
        monitor.wake()


# ---- JSON -----------------------------------------------------------------------------------


@router.get("/api/snapshots/{snapshot_id}/metrics", response_model=SnapshotMetricsOut)
def api_list(session: SessionDep, user: CurrentUser, snapshot_id: int) -> dict:
    return views.metrics_of_snapshot(session, snapshot_id, user.is_admin)


@router.get("/api/snapshots/{snapshot_id}/metrics/plan", response_model=MetricPlanOut)
def api_plan(session: SessionDep, settings: SettingsDep, user: CurrentUser, snapshot_id: int):
    """What a run can do on this machine: metrics and why not, GPU, a default count, time."""
    plan = svc.plan_of(session, settings, snapshot_id, user.id)
    plan = views.plan_for_viewer(plan, user.is_admin)
    metrics = {m: {"runnable": plan.runnable(m), "reason": plan.reason(m), "note": plan.note(m)}
               for m in svc.ALL_METRICS}  # fmt: skip
    can = [m for m in svc.ALL_METRICS if plan.runnable(m)]
    return MetricPlanOut(device=plan.device, cuda_available=plan.cuda,
                         suggested_num=plan.suggested_num,
                         estimate_s=plan.estimate(can, plan.suggested_num),
                         calibrated_from=plan.calibrated_from, metrics=metrics,
                         error=plan.error)  # fmt: skip


@router.post("/api/snapshots/{snapshot_id}/metrics", status_code=202, response_model=MetricRunOut)
def api_start(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    admin: AdminUser,
    snapshot_id: int,
    body: MetricRunIn | None = None,
) -> dict:
    """{"metrics": ["fid", "kid"], "num": 2000, "device": "auto"} → the queued (or the
    identical, already active) run; without num, the count that fits this machine."""
    run, _ = svc.start_run(session, settings, snapshot_id, body.raw() if body else {}, admin)
    _wake(request)
    return views.run_dict(run, admin=True)


@router.get("/api/metric-runs/{run_id}", response_model=MetricRunOut)
def api_get(session: SessionDep, user: CurrentUser, run_id: int) -> dict:
    return views.run_dict(svc.get_run(session, run_id), user.is_admin)


@router.post("/api/metric-runs/{run_id}/cancel", response_model=MetricRunOut)
def api_cancel(session: SessionDep, admin: AdminUser, run_id: int) -> JSONResponse:
    out = views.run_dict(svc.cancel_run(session, run_id, admin), admin=True)
    return JSONResponse(out, status_code=202 if out["cancelling"] else 200)


@router.get(
    "/api/metric-runs/{run_id}/pairs/{k}/{which}.png",
    dependencies=[blind("metric_run")],
    **file_response("image/png", "a thumbnail of a closest (generated, training) pair"),
)
def api_pair_image(
    session: SessionDep, settings: SettingsDep, user: CurrentUser, run_id: int, k: int, which: str
) -> FileResponse:
    """A thumbnail of a closest (generated, training) pair; made on the first request."""
    path = metric_pairs.thumbnail(settings, svc.get_run(session, run_id), k, which)
    return FileResponse(path, media_type="image/png")


# ---- the snapshot page's Metrics section ----------------------------------------------------


def _plan(session, settings, snapshot_id: int, user_id: int = 0):
    try:
        return svc.plan_of(session, settings, snapshot_id, user_id)
    except DomainError as exc:  # e.g. the dataset zip is gone: the form says so
        return svc.MetricPlan(None, exc.detail)


def _panel(
    request: Request,
    session: SessionDep,
    snapshot_id: int,
    live_only: bool = False,
    part: str = "",
    **extra: Any,
) -> Response:
    """The whole section, or (polling) only its live block while a run is active; when the
    last one finishes, the whole section replaces itself so the results appear. `part`
    "form" / "estimate": the start form, or its estimate line, for the current choices."""
    snap = get_snapshot(session, snapshot_id)
    admin = request.state.user.is_admin  # server paths for admins only
    ctx = {"snap": snap, **views.panel_context(session, snap, admin=admin, **extra)}
    if part in ("form", "estimate"):
        return render(request, "metrics/panel.html", ctx, block=f"metric_{part}")
    if live_only and ctx["metric_active"]:
        return render(request, "metrics/panel.html", ctx, block="metric_live")
    response = render(request, "metrics/panel.html", ctx)
    if live_only:
        response.headers.update({"HX-Retarget": "#metrics-panel", "HX-Reswap": "outerHTML"})
    return response


@router.get("/snapshots/{snapshot_id}/metrics", dependencies=[blind("snapshot")])
def panel(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    user: CurrentUser,
    snapshot_id: int,
    part: str = "",
) -> Response:
    if not is_htmx(request):  # the section lives on the snapshot page
        return RedirectResponse(f"/snapshots/{snapshot_id}#metrics-panel", status_code=303)
    if part not in ("form", "estimate"):
        return _panel(request, session, snapshot_id, live_only=part == "live")
    form: dict[str, Any] | None = None
    if part == "estimate":
        form = {k: v for k, v in request.query_params.items() if k not in ("part", "metrics")}
        form["metrics"] = request.query_params.getlist("metrics")
    plan = views.plan_for_viewer(_plan(session, settings, snapshot_id, user.id), user.is_admin)
    return _panel(request, session, snapshot_id, part=part, plan=plan, form=form)


@router.post("/snapshots/{snapshot_id}/metrics")
async def panel_start(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    admin: AdminUser,
    snapshot_id: int,
) -> Response:
    form = await request.form()
    raw: dict[str, Any] = {k: v for k, v in form.items() if isinstance(v, str)}
    raw["metrics"] = [v for v in form.getlist("metrics") if isinstance(v, str)]
    plan = _plan(session, settings, snapshot_id, admin.id)
    try:
        svc.start_run(session, settings, snapshot_id, raw, admin, plan if plan.plan else None)
    except InvalidInput as exc:
        # htmx swaps only 2xx: the form comes back with its error inline.
        response = _panel(request, session, snapshot_id, form=raw, error=exc.detail, plan=plan)
        response.status_code = 200 if is_htmx(request) else 422
        return response
    _wake(request)
    if not is_htmx(request):
        return RedirectResponse(f"/snapshots/{snapshot_id}#metrics-panel", status_code=303)
    return _panel(request, session, snapshot_id, plan=plan)


@router.post("/metric-runs/{run_id}/cancel")
def panel_cancel(request: Request, session: SessionDep, admin: AdminUser, run_id: int) -> Response:
    run = svc.cancel_run(session, run_id, admin)
    if not is_htmx(request):
        return RedirectResponse(f"/snapshots/{run.snapshot_id}#metrics-panel", status_code=303)
    return _panel(request, session, run.snapshot_id, live_only=True)
