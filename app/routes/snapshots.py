"""Snapshots of training jobs: facts, sample grids, the admin-only file, generation on demand."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Form, Query, Request, UploadFile
from fastapi.responses import FileResponse, Response
from starlette.background import BackgroundTask

from app.deps import AdminUser, CurrentUser, GenerationPlace, SessionDep, SettingsDep, blind
from app.errors import InvalidInput, NotFound
from app.presentation import metric_views
from app.schemas.media import file_response
from app.schemas.snapshots import GenerateIn, PklImportOut, SnapshotOut
from app.services import limits
from app.services.training import imports
from app.services.training import jobs as jobs_svc
from app.services.training import snapshots as svc
from app.templating import render

router = APIRouter()
ClassQuery = Annotated[str | None, Query(alias="class")]


def _class(value: str | None) -> int | None:
    """The class of a conditional generator; empty means none (the form's first option)."""
    if value is None or value.strip() == "":
        return None
    try:
        return int(value)
    except ValueError as exc:
        raise InvalidInput(f"class: {value!r} is not a class number") from exc


def _zip_response(gen: svc.Generated, snap) -> FileResponse:
    path = svc.zip_generated(gen, snap)
    return FileResponse(
        path,
        media_type="application/zip",
        filename=path.name,
        background=BackgroundTask(lambda: _remove(gen.folder)),
    )


def _remove(folder: Path) -> None:
    shutil.rmtree(folder, ignore_errors=True)


# ---- JSON and files -------------------------------------------------------------------------


@router.get("/api/snapshots/{snapshot_id}", response_model=SnapshotOut)
def api_get(session: SessionDep, user: CurrentUser, snapshot_id: int) -> SnapshotOut:
    """A snapshot's facts; its server path and download link only for admins."""
    return jobs_svc.snapshot_out(svc.get_snapshot(session, snapshot_id), user.is_admin)


@router.post("/api/snapshots/import", status_code=201, response_model=PklImportOut)
def api_import(
    session: SessionDep,
    settings: SettingsDep,
    admin: AdminUser,
    file: UploadFile,
    dataset_id: Annotated[int, Form(description="the dataset it will fine-tune on")],
) -> PklImportOut:
    """A published StyleGAN2-ADA .pkl as a snapshot to fine-tune from (nothing in it runs)."""
    snap = imports.import_pkl(session, settings, file.file, file.filename or "", dataset_id, admin)
    facts = jobs_svc.snapshot_out(snap, True)
    c_dim = int(snap.job.options.get("c_dim") or 0)
    return PklImportOut(snapshot=facts, resolution=snap.job.resolution, c_dim=c_dim)


@router.get(
    "/api/snapshots/{snapshot_id}/download",
    **file_response("application/octet-stream", "the snapshot file (admins)"),
)
def api_download(session: SessionDep, admin: AdminUser, snapshot_id: int) -> FileResponse:
    path = svc.snapshot_file(svc.get_snapshot(session, snapshot_id))
    return FileResponse(path, media_type="application/octet-stream", filename=path.name)


@router.get(
    "/api/snapshots/{snapshot_id}/samples.png",
    dependencies=[blind("snapshot")],
    **file_response("image/png", "the sample grid written with the snapshot"),
)
def api_samples(session: SessionDep, user: CurrentUser, snapshot_id: int) -> FileResponse:
    snap = svc.get_snapshot(session, snapshot_id)
    if not snap.samples_path or not Path(snap.samples_path).is_file():
        raise NotFound(f"snapshot {snapshot_id} has no sample grid")
    return FileResponse(snap.samples_path, media_type="image/png")


@router.post(
    "/api/snapshots/{snapshot_id}/generate",
    dependencies=[blind("snapshot"), GenerationPlace],  # bounded queue, issue 16
    **file_response("application/zip", "the generated images"),
)
def api_generate(
    session: SessionDep,
    settings: SettingsDep,
    user: CurrentUser,
    snapshot_id: int,
    body: GenerateIn,
) -> FileResponse:
    """Images as a zip; no class on a conditional snapshot means the training data's mix."""
    limits.check_image_count(settings, svc.count_seeds(body.seeds))
    snap = svc.get_snapshot(session, snapshot_id)
    gen = svc.generate(settings, snap, body.seeds, body.trunc, body.class_idx, body.format)
    return _zip_response(gen, snap)


@router.get(
    "/api/snapshots/{snapshot_id}/generate.zip",
    dependencies=[blind("snapshot"), GenerationPlace],  # bounded queue, issue 16
    **file_response("application/zip", "the generated images"),
)
def api_generate_zip(
    session: SessionDep,
    settings: SettingsDep,
    user: CurrentUser,
    snapshot_id: int,
    seeds: str = "0-15",
    trunc: float = 1.0,
    class_idx: ClassQuery = None,
    format: str = "png",
) -> FileResponse:
    snap = svc.get_snapshot(session, snapshot_id)
    gen = svc.generate(settings, snap, seeds, trunc, _class(class_idx), format)
    return _zip_response(gen, snap)


# ---- pages ----------------------------------------------------------------------------------


def _page(
    request: Request, session: SessionDep, snap, extra: dict[str, Any] | None = None
) -> Response:
    ctx = {"nav": "jobs", "snap": snap, "job": snap.job, "gen": None, "seeds": "0-15",
           "trunc": 1.0, "class_idx": None, "gen_error": None,
           "tumour_share": svc.label_mix(snap),
           **metric_views.panel_context(session, snap, admin=request.state.user.is_admin),
           **(extra or {})}  # fmt: skip
    return render(request, "snapshots/detail.html", ctx, block="generated")


@router.get("/snapshots/{snapshot_id}", dependencies=[blind("snapshot")])
def snapshot_page(
    request: Request, session: SessionDep, user: CurrentUser, snapshot_id: int
) -> Response:
    return _page(request, session, svc.get_snapshot(session, snapshot_id))


@router.get(
    "/snapshots/{snapshot_id}/generate",
    dependencies=[blind("snapshot"), GenerationPlace],  # bounded queue, issue 16
)
def snapshot_generate(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    user: CurrentUser,
    snapshot_id: int,
    seeds: str = "0-15",
    trunc: float = 1.0,
    class_idx: ClassQuery = None,
) -> Response:
    """The grid of generated images (an htmx partial; a whole page without htmx)."""
    snap = svc.get_snapshot(session, snapshot_id)
    extra: dict[str, Any] = {"seeds": seeds, "trunc": trunc, "class_idx": None}
    try:
        extra["class_idx"] = _class(class_idx)
        extra["gen"] = svc.generate(settings, snap, seeds, trunc, extra["class_idx"], "png")
    except InvalidInput as exc:
        extra["gen_error"] = exc.detail  # shown in place of the grid
    return _page(request, session, snap, extra)


@router.get("/snapshots/generated/{token}/{name}", dependencies=[blind("generated")])
def generated_image(
    settings: SettingsDep, user: CurrentUser, token: str, name: str, overlay: str = ""
) -> Response:
    if overlay == "mask":
        return Response(svc.outlined_image(settings, token, name), media_type="image/png")
    return FileResponse(svc.generated_file(settings, token, name), media_type="image/png")
