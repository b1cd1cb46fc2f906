"""Metric runs: the JSON API, and the snapshot page's Metrics section (htmx partials)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Body, Request
from fastapi.responses import FileResponse, JSONResponse, RedirectResponse, Response

from app.deps import AdminUser, CurrentUser, SessionDep, SettingsDep
from app.errors import InvalidInput
from app.presentation import metric_views as views
from app.services.evaluation import metric_pairs
from app.services.evaluation import metric_runs as svc
from app.services.studies.blinding import guard as blind
from app.services.training.snapshots import get_snapshot
from app.templating import is_htmx, render

router = APIRouter()


def _wake(request: Request) -> None:
    """Let the monitor start a queued run now rather than at its next tick."""
    if monitor := getattr(request.app.state, "monitor", None):
        monitor.wake()


# ---- JSON -----------------------------------------------------------------------------------


@router.get("/api/snapshots/{snapshot_id}/metrics")
def api_list(session: SessionDep, user: CurrentUser, snapshot_id: int) -> dict:
    return views.metrics_of_snapshot(session, snapshot_id)


@router.post("/api/snapshots/{snapshot_id}/metrics", status_code=202)
def api_start(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    admin: AdminUser,
    snapshot_id: int,
    body: dict[str, Any] | None = Body(None),
) -> dict:
    """{"metrics": ["fid", "kid"], "num": 10000, "device": "auto"} → the queued (or the
    identical, already active) run."""
    run, _ = svc.start_run(session, settings, snapshot_id, body or {}, admin)
    _wake(request)
    return views.run_dict(run)


@router.get("/api/metric-runs/{run_id}")
def api_get(session: SessionDep, user: CurrentUser, run_id: int) -> dict:
    return views.run_dict(svc.get_run(session, run_id))


@router.post("/api/metric-runs/{run_id}/cancel")
def api_cancel(session: SessionDep, admin: AdminUser, run_id: int) -> JSONResponse:
    out = views.run_dict(svc.cancel_run(session, run_id, admin))
    return JSONResponse(out, status_code=202 if out["cancelling"] else 200)


@router.get("/api/metric-runs/{run_id}/pairs/{k}/{which}.png", dependencies=[blind("metric_run")])
def api_pair_image(
    session: SessionDep, settings: SettingsDep, user: CurrentUser, run_id: int, k: int, which: str
) -> FileResponse:
    """A thumbnail of a closest (generated, training) pair; made on the first request."""
    path = metric_pairs.thumbnail(settings, svc.get_run(session, run_id), k, which)
    return FileResponse(path, media_type="image/png")


# ---- the snapshot page's Metrics section ----------------------------------------------------


def _panel(
    request: Request, session: SessionDep, snapshot_id: int, live_only: bool = False, **extra: Any
) -> Response:
    """The whole section, or (polling) only its live block while a run is active; when the
    last one finishes, the whole section replaces itself so the results appear."""
    snap = get_snapshot(session, snapshot_id)
    ctx = {"snap": snap, **views.panel_context(session, snap, **extra)}
    if live_only and ctx["metric_active"]:
        return render(request, "metrics/panel.html", ctx, block="metric_live")
    response = render(request, "metrics/panel.html", ctx)
    if live_only:
        response.headers.update({"HX-Retarget": "#metrics-panel", "HX-Reswap": "outerHTML"})
    return response


@router.get("/snapshots/{snapshot_id}/metrics", dependencies=[blind("snapshot")])
def panel(
    request: Request, session: SessionDep, user: CurrentUser, snapshot_id: int, part: str = ""
) -> Response:
    if not is_htmx(request):  # the section lives on the snapshot page
        return RedirectResponse(f"/snapshots/{snapshot_id}#metrics-panel", status_code=303)
    return _panel(request, session, snapshot_id, live_only=part == "live")


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
    try:
        svc.start_run(session, settings, snapshot_id, raw, admin)
    except InvalidInput as exc:
        session.rollback()
        # htmx swaps only 2xx: the form comes back with its error inline.
        response = _panel(request, session, snapshot_id, form=raw, error=exc.detail)
        response.status_code = 200 if is_htmx(request) else 422
        return response
    _wake(request)
    if not is_htmx(request):
        return RedirectResponse(f"/snapshots/{snapshot_id}#metrics-panel", status_code=303)
    return _panel(request, session, snapshot_id)


@router.post("/metric-runs/{run_id}/cancel")
def panel_cancel(request: Request, session: SessionDep, admin: AdminUser, run_id: int) -> Response:
    run = svc.cancel_run(session, run_id, admin)
    if not is_htmx(request):
        return RedirectResponse(f"/snapshots/{run.snapshot_id}#metrics-panel", status_code=303)
    return _panel(request, session, run.snapshot_id, live_only=True)
