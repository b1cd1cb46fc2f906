"""Training jobs: the JSON API under /api/jobs and the dashboard and live job pages."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Body, Request
from fastapi.responses import FileResponse, JSONResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from app.deps import AdminUser, CurrentUser, SessionDep, SettingsDep, blind
from app.errors import InvalidInput, NotFound
from app.models import User
from app.presentation import charts, metric_views
from app.schemas.jobs import (
    EstimateOut,
    JobOptionsIn,
    JobOut,
    ResumeIn,
    RetentionIn,
    RetentionOut,
)
from app.schemas.media import file_response
from app.services.training import estimate, imports, pages, retention
from app.services.training import jobs as svc
from app.services.training.job_monitor import JobMonitor
from app.services.training.job_options import Devices, JobOptionsInvalid, form_choices
from app.templating import is_htmx, render
from app.trainer_client import rundir

router = APIRouter()
# The body is read as a dict so every problem is named at once in the form's words; its
# schema (for /docs) is the model's.
_OPTIONS_BODY = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": JobOptionsIn.model_json_schema()}},
    }
}


def _monitor(request: Request) -> JobMonitor | None:
    return getattr(request.app.state, "monitor", None)


def _devices(request: Request) -> Devices:
    monitor = _monitor(request)
    return monitor.devices() if monitor else Devices()


def _wake(request: Request) -> None:
    if monitor := _monitor(request):
        monitor.wake()


# ---- JSON -----------------------------------------------------------------------------------


@router.get("/api/jobs", response_model=list[JobOut])
def api_list(session: SessionDep, user: CurrentUser) -> list[JobOut]:
    return [svc.job_out(j, user.is_admin, detail=False) for j in svc.list_jobs(session)]


@router.post("/api/jobs", status_code=201, response_model=JobOut, openapi_extra=_OPTIONS_BODY)
def api_create(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    admin: AdminUser,
    body: dict[str, Any] = Body(...),
) -> JobOut:
    job = svc.create_job(session, settings, body, _devices(request), admin)
    _wake(request)
    return svc.job_out(job, admin=True)


@router.post("/api/jobs/estimate", response_model=EstimateOut, openapi_extra=_OPTIONS_BODY)
def api_estimate(
    request: Request, session: SessionDep, admin: AdminUser, body: dict[str, Any] = Body(...)
) -> dict[str, Any]:
    """The duration the chosen settings would take here, before starting anything;
    `"measure": true` first measures this network on this machine (once, then kept)."""
    measure = bool(body.pop("measure", False))
    return estimate.for_form(session, body, _devices(request), measure=measure)


@router.get("/api/jobs/{job_id}", response_model=JobOut)
def api_get(session: SessionDep, user: CurrentUser, job_id: int) -> JobOut:
    return svc.job_out(svc.get_job(session, job_id), user.is_admin)


@router.post("/api/jobs/{job_id}/cancel", response_model=JobOut)
def api_cancel(session: SessionDep, admin: AdminUser, job_id: int) -> JSONResponse:
    job = svc.cancel_job(session, job_id, admin)
    status = 202 if job.state == "cancelling" else 200
    return JSONResponse(svc.job_out(job, True).model_dump(mode="json"), status_code=status)


@router.post("/api/jobs/{job_id}/resume", status_code=202, response_model=JobOut)
def api_resume(
    request: Request,
    session: SessionDep,
    admin: AdminUser,
    job_id: int,
    body: ResumeIn | None = Body(None),
) -> JobOut:
    job = svc.resume_job(session, job_id, admin, kimg=body.kimg if body else None)
    _wake(request)
    return svc.job_out(job, True)


@router.put("/api/jobs/{job_id}/retention", response_model=RetentionOut)
def api_retention(
    session: SessionDep, admin: AdminUser, job_id: int, body: RetentionIn
) -> RetentionOut:
    """Applied now: the snapshots it lets go are deleted; says how many and the disk left."""
    job = svc.get_job(session, job_id)
    deleted = retention.set_retention(session, job, body.keep_snapshots, body.keep_best_fid)
    return RetentionOut(deleted=deleted, disk_bytes=retention.disk_bytes(job))


@router.get("/api/jobs/{job_id}/stats")
def api_stats(session: SessionDep, user: CurrentUser, job_id: int) -> list[dict]:
    return rundir.read_all_stats(svc.get_job(session, job_id).run_dir)


@router.get(
    "/api/jobs/{job_id}/samples/latest.png",
    dependencies=[blind("job")],
    **file_response("image/png", "the newest sample grid"),
)
def api_latest_samples(session: SessionDep, user: CurrentUser, job_id: int) -> FileResponse:
    grid = rundir.latest_samples(svc.get_job(session, job_id).run_dir)
    if grid is None:
        raise NotFound(f"job {job_id} has no sample grid yet")
    return FileResponse(grid, media_type="image/png", headers={"Cache-Control": "no-cache"})


# ---- pages ----------------------------------------------------------------------------------


def _list_page(
    request: Request, session: SessionDep, ctx: dict, block: str | None, status: int = 200
) -> Response:
    jobs = svc.list_jobs(session)
    ctx = {"nav": "jobs", "jobs": jobs, "rows": pages.list_rows(jobs), **ctx,
           "any_active": any(j.state in svc.ACTIVE for j in jobs)}  # fmt: skip
    return render(request, "jobs/list.html", ctx, block=block, status_code=status)


def _form_ctx(
    session: SessionDep,
    devices: Devices,
    values: dict[str, Any] | None = None,
    errors: dict[str, str] | None = None,
    preset_changed: bool = False,
) -> dict[str, Any]:
    """The form's context plus the up-front duration estimate of what it shows."""
    ctx = form_choices(session, devices, values, errors, preset_changed)
    ctx["augpipes"] = ctx["defaults"]["augpipes"]
    shown = {k: v for k, v in ctx["form"].items() if k in JobOptionsIn.model_fields}
    ctx["estimate"] = estimate.for_form(session, shown, devices) if ctx["dataset"] else None
    return ctx


@router.post("/jobs/estimate")
async def job_estimate(request: Request, session: SessionDep, admin: AdminUser) -> Response:
    """The estimate line for the form's current values (htmx, on every change)."""
    form = {k: v for k, v in (await request.form()).items() if isinstance(v, str)}
    raw = {k: v for k, v in form.items() if k in JobOptionsIn.model_fields}
    measure = form.get("measure") == "1"  # the "Measure this machine" button
    # measuring runs real training steps: off the event loop, so other requests go on
    found = await run_in_threadpool(estimate.for_form, session, raw, _devices(request), measure)
    ctx = {"estimate": found, "form": raw}
    return render(request, "jobs/_estimate.html", ctx)


@router.get("/jobs")
def jobs_page(
    request: Request, session: SessionDep, user: CurrentUser, part: str | None = None
) -> Response:
    """The dashboard; htmx polls `?part=table` for the job table alone."""
    block = "jobs_table" if part == "table" else None
    ctx = _form_ctx(session, _devices(request)) if user.is_admin else {"datasets": []}
    return _list_page(request, session, ctx, block)


@router.get("/jobs/form")
def job_form(request: Request, session: SessionDep, admin: AdminUser) -> Response:
    """The form again for another dataset or preset (htmx, when either changes); the form's
    values come along, so a re-fill keeps what was typed (`changed=preset`: sizes follow it)."""
    values = {k: v for k, v in request.query_params.items() if k in JobOptionsIn.model_fields}
    changed = request.query_params.get("changed")
    ctx = _form_ctx(session, _devices(request), values, preset_changed=changed == "preset")
    return _list_page(request, session, ctx, "job_form")


@router.post("/jobs")
async def job_submit(
    request: Request, session: SessionDep, settings: SettingsDep, admin: AdminUser
) -> Response:
    raw = {k: v for k, v in (await request.form()).items() if isinstance(v, str)}
    devices = _devices(request)
    try:
        job = svc.create_job(session, settings, raw, devices, admin)
    except JobOptionsInvalid as exc:
        ctx = _form_ctx(session, devices, raw, errors=exc.errors)
        # htmx swaps only 2xx: the form comes back with its errors inline.
        status = 200 if is_htmx(request) else 422
        return _list_page(request, session, ctx, "job_form", status)
    _wake(request)
    if is_htmx(request):
        return Response(status_code=204, headers={"HX-Redirect": f"/jobs/{job.id}"})
    return RedirectResponse(f"/jobs/{job.id}", status_code=303)


def _job_page(
    request: Request, session: SessionDep, user: User, job_id: int, compare: int | None = None
) -> Response:
    job = svc.get_job(session, job_id)
    other = svc.get_job(session, compare) if compare else None
    rows = svc.stats_series(job.run_dir)
    grid = rundir.latest_samples(job.run_dir)
    fid_on = bool(job.options.get("metrics_every"))
    ctx = {
        "nav": "jobs", "job": job, "view": pages.page_view(session, job, user.is_admin),
        "charts": charts.job_charts(rows, metric_views.fid_points(session, job.id), fid_on,
                                    pages.compare_series(other)),
        "compare": other, "others": svc.list_jobs(session),
        "log_tail": pages.log_for(job, user.is_admin, "log.txt", 25),
        "worker_tail": pages.log_for(job, user.is_admin, "worker.log", 15),
        "has_samples": grid is not None,
        "samples_v": int(grid.stat().st_mtime_ns // 1_000_000) if grid else 0,
    }  # fmt: skip
    return render(request, "jobs/detail.html", ctx, block="progress")


@router.get("/jobs/{job_id}", dependencies=[blind("job")])
def job_page(
    request: Request, session: SessionDep, user: CurrentUser, job_id: int, compare: int = 0
) -> Response:
    return _job_page(request, session, user, job_id, compare or None)


@router.post("/jobs/{job_id}/cancel")
def job_cancel(request: Request, session: SessionDep, admin: AdminUser, job_id: int) -> Response:
    svc.cancel_job(session, job_id, admin)
    return _job_page(request, session, admin, job_id)


@router.post("/jobs/{job_id}/resume")
def job_resume(request: Request, session: SessionDep, admin: AdminUser, job_id: int) -> Response:
    svc.resume_job(session, job_id, admin)
    _wake(request)
    return _job_page(request, session, admin, job_id)


@router.post("/jobs/import")
async def job_import(
    request: Request, session: SessionDep, settings: SettingsDep, admin: AdminUser
) -> Response:
    """The jobs page's "import a published checkpoint" form (multipart)."""
    form = await request.form()
    upload, dataset = form.get("file"), str(form.get("dataset_id") or "")
    if not isinstance(upload, UploadFile) or not dataset.isdigit():
        raise InvalidInput("choose a .pkl file and the dataset it will fine-tune on")
    snap = imports.import_pkl(session, settings, upload.file, upload.filename or "",
                              int(dataset), admin)  # fmt: skip
    if is_htmx(request):
        return Response(status_code=204, headers={"HX-Redirect": f"/jobs/{snap.job_id}"})
    return RedirectResponse(f"/jobs/{snap.job_id}", status_code=303)


@router.post("/jobs/{job_id}/retention")
async def job_retention(
    request: Request, session: SessionDep, admin: AdminUser, job_id: int
) -> Response:
    form = await request.form()
    job = svc.get_job(session, job_id)
    keep = str(form.get("keep_snapshots") or "")
    pages.change_retention(session, job, keep, form.get("keep_best_fid") in ("true", "on"))
    return RedirectResponse(f"/jobs/{job_id}", status_code=303)
