"""Training jobs: the JSON API under /api/jobs and the dashboard and live job pages."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import APIRouter, Body, Request
from fastapi.responses import FileResponse, JSONResponse, RedirectResponse, Response
from sqlalchemy import select

from app.deps import AdminUser, CurrentUser, SessionDep, SettingsDep
from app.errors import InvalidInput, NotFound
from app.models import DatasetVersion, Snapshot
from app.presentation import charts, metric_views
from app.services.studies.blinding import guard as blind
from app.services.training import jobs as svc
from app.services.training.job_monitor import JobMonitor
from app.services.training.job_options import Devices, JobOptionsInvalid, form_defaults
from app.templating import is_htmx, render
from app.trainer_client import rundir

router = APIRouter()


def _monitor(request: Request) -> JobMonitor | None:
    return getattr(request.app.state, "monitor", None)


def _devices(request: Request) -> Devices:
    monitor = _monitor(request)
    return monitor.devices() if monitor else Devices()


def _wake(request: Request) -> None:
    if monitor := _monitor(request):
        monitor.wake()


# ---- JSON -----------------------------------------------------------------------------------


@router.get("/api/jobs")
def api_list(session: SessionDep, user: CurrentUser) -> list[dict]:
    return [svc.job_dict(j, detail=False) for j in svc.list_jobs(session)]


@router.post("/api/jobs", status_code=201)
def api_create(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    admin: AdminUser,
    body: dict[str, Any] = Body(...),
) -> dict:
    job = svc.create_job(session, settings, body, _devices(request), admin)
    _wake(request)
    return svc.job_dict(job)


@router.get("/api/jobs/{job_id}")
def api_get(session: SessionDep, user: CurrentUser, job_id: int) -> dict:
    return svc.job_dict(svc.get_job(session, job_id))


@router.post("/api/jobs/{job_id}/cancel")
def api_cancel(session: SessionDep, admin: AdminUser, job_id: int) -> JSONResponse:
    job = svc.cancel_job(session, job_id, admin)
    return JSONResponse(svc.job_dict(job), status_code=202 if job.state == "cancelling" else 200)


@router.post("/api/jobs/{job_id}/resume", status_code=202)
def api_resume(
    request: Request,
    session: SessionDep,
    admin: AdminUser,
    job_id: int,
    body: dict[str, Any] | None = Body(None),
) -> dict:
    kimg = (body or {}).get("kimg")
    if kimg is not None and (isinstance(kimg, bool) or not isinstance(kimg, int | float)):
        raise InvalidInput("kimg: must be a number")
    job = svc.resume_job(session, job_id, admin, kimg=kimg)
    _wake(request)
    return svc.job_dict(job)


@router.get("/api/jobs/{job_id}/stats")
def api_stats(session: SessionDep, user: CurrentUser, job_id: int) -> list[dict]:
    return rundir.read_all_stats(svc.get_job(session, job_id).run_dir)


@router.get("/api/jobs/{job_id}/samples/latest.png", dependencies=[blind("job")])
def api_latest_samples(session: SessionDep, user: CurrentUser, job_id: int) -> FileResponse:
    grid = rundir.latest_samples(svc.get_job(session, job_id).run_dir)
    if grid is None:
        raise NotFound(f"job {job_id} has no sample grid yet")
    return FileResponse(grid, media_type="image/png", headers={"Cache-Control": "no-cache"})


# ---- pages ----------------------------------------------------------------------------------


def _form_context(
    session: SessionDep,
    devices: Devices,
    values: dict[str, Any] | None = None,
    errors: dict[str, str] | None = None,
) -> dict[str, Any]:
    datasets = list(session.scalars(select(DatasetVersion).order_by(DatasetVersion.id.desc())))
    chosen = None
    if values and values.get("dataset_id"):
        chosen = next((d for d in datasets if str(d.id) == str(values["dataset_id"])), None)
    chosen = chosen or (datasets[0] if datasets else None)
    defaults = form_defaults(chosen, devices)
    form = {**defaults, **{k: v for k, v in (values or {}).items() if v not in (None, "")}}
    snaps = session.scalars(select(Snapshot).order_by(Snapshot.id.desc()).limit(200)).all()
    return {
        "datasets": datasets,
        "dataset": chosen,
        "form": form,
        "defaults": defaults,
        "errors": errors or {},
        "devices": devices,
        "resume_snapshots": [s for s in snaps if chosen and s.job.resolution == chosen.resolution],
    }


def _list_page(
    request: Request, session: SessionDep, ctx: dict, block: str | None, status: int = 200
) -> Response:
    jobs = svc.list_jobs(session)
    ctx = {"nav": "jobs", "jobs": jobs, "svc": svc, "any_active": _any_active(jobs), **ctx}
    return render(request, "jobs/list.html", ctx, block=block, status_code=status)


def _any_active(jobs: list) -> bool:
    return any(j.state in svc.ACTIVE for j in jobs)


@router.get("/jobs")
def jobs_page(
    request: Request, session: SessionDep, user: CurrentUser, part: str | None = None
) -> Response:
    """The dashboard; htmx polls `?part=table` for the job table alone."""
    block = "jobs_table" if part == "table" else None
    return _list_page(request, session, _form_context(session, _devices(request)), block)


@router.get("/jobs/form")
def job_form(
    request: Request, session: SessionDep, admin: AdminUser, dataset_id: int | None = None
) -> Response:
    """The form again with the defaults of another dataset (htmx, when the dataset changes)."""
    ctx = _form_context(session, _devices(request), {"dataset_id": dataset_id})
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
        session.rollback()
        ctx = _form_context(session, devices, raw, exc.errors)
        # htmx swaps only 2xx: the form comes back with its errors inline.
        status = 200 if is_htmx(request) else 422
        return _list_page(request, session, ctx, "job_form", status)
    _wake(request)
    if is_htmx(request):
        return Response(status_code=204, headers={"HX-Redirect": f"/jobs/{job.id}"})
    return RedirectResponse(f"/jobs/{job.id}", status_code=303)


def _job_page(request: Request, session: SessionDep, job_id: int) -> Response:
    job = svc.get_job(session, job_id)
    rows = svc.stats_series(job.run_dir)
    grid = rundir.latest_samples(job.run_dir)
    ctx = {
        "nav": "jobs",
        "job": job,
        "svc": svc,
        "eta": svc.eta_seconds(job),
        "charts": charts.job_charts(rows, metric_views.fid_points(session, job.id)),
        "log_tail": rundir.tail(Path(job.run_dir) / "log.txt", lines=25),
        "worker_tail": rundir.tail(Path(job.run_dir) / "worker.log", lines=15),
        "has_samples": grid is not None,
        "samples_v": int(grid.stat().st_mtime_ns // 1_000_000) if grid else 0,
        "can_resume": job.state in svc.RESUMABLE and svc.resumable_from(session, job),
        "stale": svc.heartbeat_stale(job),
    }
    return render(request, "jobs/detail.html", ctx, block="progress")


@router.get("/jobs/{job_id}", dependencies=[blind("job")])
def job_page(request: Request, session: SessionDep, user: CurrentUser, job_id: int) -> Response:
    return _job_page(request, session, job_id)


@router.post("/jobs/{job_id}/cancel")
def job_cancel(request: Request, session: SessionDep, admin: AdminUser, job_id: int) -> Response:
    svc.cancel_job(session, job_id, admin)
    return _job_page(request, session, job_id)


@router.post("/jobs/{job_id}/resume")
def job_resume(request: Request, session: SessionDep, admin: AdminUser, job_id: int) -> Response:
    svc.resume_job(session, job_id, admin)
    _wake(request)
    return _job_page(request, session, job_id)
