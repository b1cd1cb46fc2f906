"""Utility runs: the JSON API, the snapshot page's Utility section and the results page."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response

from app.deps import AdminUser, SessionDep, SettingsDep
from app.errors import Conflict, InvalidInput, NotFound
from app.schemas.media import file_response
from app.schemas.utility import UtilityResultsOut, UtilityRunOut, UtilityStart
from app.services.training.snapshots import get_snapshot
from app.services.utility import report, views
from app.services.utility import runs as svc
from app.templating import is_htmx, render

router = APIRouter()


def _wake(request: Request) -> None:
    if monitor := getattr(request.app.state, "monitor", None):
        monitor.wake()


def _result(session: SessionDep, run_id: int) -> dict:
    run = svc.get_run(session, run_id)
    if not run.result:
        raise NotFound(f"utility run {run_id} has no results ({run.state})")
    return run.result


# ---- JSON -----------------------------------------------------------------------------------


@router.get("/api/snapshots/{snapshot_id}/utility")
def api_list(session: SessionDep, admin: AdminUser, snapshot_id: int) -> list[UtilityRunOut]:
    return [UtilityRunOut(**views.run_dict(r)) for r in svc.list_runs(session, snapshot_id)]


@router.post("/api/snapshots/{snapshot_id}/utility", status_code=202)
def api_start(request: Request, session: SessionDep, settings: SettingsDep, admin: AdminUser,
              snapshot_id: int, body: UtilityStart) -> UtilityRunOut:  # fmt: skip
    """Queue a utility run (or return the identical active one)."""
    _no_cuda_without_gpu(request, body.raw())
    run, _ = svc.start_run(session, settings, snapshot_id, body.raw(), admin)
    _wake(request)
    return UtilityRunOut(**views.run_dict(run))


@router.get("/api/utility-runs/{run_id}")
def api_get(session: SessionDep, admin: AdminUser, run_id: int) -> UtilityRunOut:
    return UtilityRunOut(**views.run_dict(svc.get_run(session, run_id)))


@router.post(
    "/api/utility-runs/{run_id}/cancel",
    response_model=UtilityRunOut,
    responses={202: {"model": UtilityRunOut, "description": "stopping: the run ends shortly"}},
)
def api_cancel(session: SessionDep, admin: AdminUser, run_id: int) -> JSONResponse:
    out = UtilityRunOut(**views.run_dict(svc.cancel_run(session, run_id, admin)))
    return JSONResponse(out.model_dump(mode="json"), status_code=202 if out.cancelling else 200)


@router.get("/api/utility-runs/{run_id}/results.json", response_model=UtilityResultsOut)
def api_results_json(session: SessionDep, admin: AdminUser, run_id: int) -> JSONResponse:
    headers = {"Content-Disposition": f'attachment; filename="utility-{run_id}.json"'}
    return JSONResponse(_result(session, run_id), headers=headers)


@router.get(
    "/api/utility-runs/{run_id}/results.csv",
    **file_response("text/csv", "one row per arm and fraction"),
)
def api_results_csv(session: SessionDep, admin: AdminUser, run_id: int) -> Response:
    headers = {"Content-Disposition": f'attachment; filename="utility-{run_id}.csv"'}
    return Response(report.to_csv(_result(session, run_id)), media_type="text/csv",
                    headers=headers)  # fmt: skip


# ---- HTML -----------------------------------------------------------------------------------


def _has_cuda(request: Request) -> bool:
    """Where the runs go has a GPU: this machine's, or a cluster's nodes."""
    monitor = getattr(request.app.state, "monitor", None)
    return bool(monitor and monitor.devices().cuda)


def _no_cuda_without_gpu(request: Request, raw: dict[str, Any]) -> None:
    if str(raw.get("device") or "") == "cuda" and not _has_cuda(request):
        raise InvalidInput("device: there is no GPU where the runs go; choose cpu or auto")


def _panel(request: Request, session: SessionDep, snapshot_id: int, **extra: Any) -> Response:
    cuda = _has_cuda(request)  # offer `cuda` only where there is one
    ctx = views.panel_context(session, get_snapshot(session, snapshot_id), cuda=cuda, **extra)
    if is_htmx(request):
        return render(request, "utility/panel.html", ctx, block="utility_panel")
    return render(request, "utility/panel.html", ctx)


@router.get("/snapshots/{snapshot_id}/utility")
def panel(request: Request, session: SessionDep, admin: AdminUser, snapshot_id: int) -> Response:
    """The snapshot page loads this section (htmx); without htmx it is a page of its own."""
    return _panel(request, session, snapshot_id)


@router.post("/snapshots/{snapshot_id}/utility")
async def panel_start(request: Request, session: SessionDep, settings: SettingsDep,
                      admin: AdminUser, snapshot_id: int) -> Response:  # fmt: skip
    form = await request.form()
    raw: dict[str, Any] = {k: v for k, v in form.items() if isinstance(v, str)}
    if form.getlist("arm"):
        raw.pop("arm", None)
        raw["arms"] = [v for v in form.getlist("arm") if isinstance(v, str)]
    try:
        _no_cuda_without_gpu(request, raw)
        run, _ = svc.start_run(session, settings, snapshot_id, raw, admin)
    except (InvalidInput, Conflict) as exc:
        response = _panel(request, session, snapshot_id, form=raw, error=exc.detail)
        response.status_code = 200 if is_htmx(request) else exc.status_code
        return response
    _wake(request)
    url = f"/utility-runs/{run.id}"
    if is_htmx(request):
        return Response(status_code=204, headers={"HX-Redirect": url})
    return RedirectResponse(url, status_code=303)


@router.get("/utility-runs/{run_id}")
def results_page(request: Request, session: SessionDep, admin: AdminUser, run_id: int,
                 part: str = "") -> Response:  # fmt: skip
    """The results page; while the run is active, its live block polls itself."""
    ctx = views.page_context(session, svc.get_run(session, run_id), admin)
    if part == "live" and is_htmx(request):
        if ctx["active"]:
            return render(request, "utility/run.html", ctx, block="utility_live")
        return Response(status_code=200, headers={"HX-Refresh": "true"})
    return render(request, "utility/run.html", ctx)


@router.post("/utility-runs/{run_id}/cancel")
def cancel(request: Request, session: SessionDep, admin: AdminUser, run_id: int) -> Response:
    svc.cancel_run(session, run_id, admin)
    return RedirectResponse(f"/utility-runs/{run_id}", status_code=303)
