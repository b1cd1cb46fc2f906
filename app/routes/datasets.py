"""Dataset versions: freeze approved slices, list, inspect, download the zip, thumbnails.

Any logged-in user may freeze: radiologists curate, a freeze only adds an immutable version
(nothing is overwritten or deleted), and every freeze is audited."""

from __future__ import annotations

import re
from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import FileResponse, RedirectResponse, Response
from pydantic import BaseModel

from app.deps import CurrentUser, SessionDep, SettingsDep
from app.models import DatasetVersion
from app.services.curation import datasets as service
from app.services.curation.export import image_name
from app.services.studies.blinding import guard as blind
from app.templating import is_htmx, render

router = APIRouter()


class FreezeIn(BaseModel):
    name: str
    resolution: int = 256
    window: str = "liver"
    bit_depth: int = 8


def summary(d: DatasetVersion) -> dict:
    return {
        "id": d.id,
        "name": d.name,
        "resolution": d.resolution,
        "window": d.window,
        "window_width": d.window_width,
        "window_level": d.window_level,
        "bit_depth": d.bit_depth,
        "content_hash": d.content_hash,
        "num_images": d.num_images,
        "num_tumour": d.num_tumour,
        "created_at": d.created_at.isoformat(),
        "created_by_id": d.created_by_id,
        "zip_url": f"/api/datasets/{d.id}/export.zip",
    }


def detail(d: DatasetVersion) -> dict:
    items = [
        {
            "position": it.position,
            "file": image_name(it.position),
            "volume_id": it.volume_id,
            "slice_index": it.slice_index,
            "label": it.label,
            "review_id": it.review_id,
        }
        for it in d.items
    ]
    return {**summary(d), "items": items}


def _download_name(d: DatasetVersion) -> str:
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", d.name).strip("-.")[:60] or "dataset"
    return f"medsynth-{d.id}-{slug}.zip"


@router.post("/api/datasets", status_code=201)
def api_freeze(
    session: SessionDep, settings: SettingsDep, user: CurrentUser, body: FreezeIn
) -> dict:
    d = service.freeze_dataset(
        session, settings, body.name, body.resolution, body.window, body.bit_depth, user
    )
    session.commit()
    return detail(d)


@router.get("/api/datasets")
def api_list(session: SessionDep, user: CurrentUser) -> list[dict]:
    return [summary(d) for d in service.list_datasets(session)]


@router.get("/api/datasets/{dataset_id}")
def api_get(session: SessionDep, user: CurrentUser, dataset_id: int) -> dict:
    return detail(service.get_dataset(session, dataset_id))


@router.get("/api/datasets/{dataset_id}/export.zip", dependencies=[blind("dataset")])
def api_zip(
    session: SessionDep, settings: SettingsDep, user: CurrentUser, dataset_id: int
) -> Response:
    path = service.dataset_zip(session, settings, dataset_id)
    name = _download_name(service.get_dataset(session, dataset_id))
    return FileResponse(path, media_type="application/zip", filename=name)


@router.get("/api/datasets/{dataset_id}/thumbs/{position}.png", dependencies=[blind("dataset")])
def api_thumb(
    session: SessionDep, settings: SettingsDep, user: CurrentUser, dataset_id: int, position: int
) -> Response:
    png = service.thumbnail(session, settings, dataset_id, position)
    # A version never changes, so its images may be cached for good (per user: private).
    headers = {"Cache-Control": "private, max-age=31536000, immutable"}
    return Response(png, media_type="image/png", headers=headers)


@router.get("/datasets")
def datasets_page(request: Request, session: SessionDep, user: CurrentUser) -> Response:
    datasets = service.list_datasets(session)
    ctx = {
        "datasets": datasets,
        "approved": service.approved_summary(session),
        "creators": service.creators(session, datasets),
        "resolutions": service.RESOLUTIONS,
        "presets": service.PRESETS,
        "nav": "datasets",
    }
    return render(request, "datasets/list.html", ctx)


@router.post("/datasets")
def freeze_form(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    user: CurrentUser,
    name: Annotated[str, Form()] = "",
    resolution: Annotated[int, Form()] = 256,
    window: Annotated[str, Form()] = "liver",
    custom_window: Annotated[str, Form()] = "",
    bit_depth: Annotated[int, Form()] = 8,
) -> Response:
    spec = custom_window if window == "custom" else window
    d = service.freeze_dataset(session, settings, name, resolution, spec, bit_depth, user)
    session.commit()
    target = f"/datasets/{d.id}"
    if is_htmx(request):
        return Response(status_code=204, headers={"HX-Redirect": target})
    return RedirectResponse(target, status_code=303)


@router.get("/datasets/{dataset_id}", dependencies=[blind("dataset")])
def dataset_page(
    request: Request, session: SessionDep, user: CurrentUser, dataset_id: int
) -> Response:
    d = service.get_dataset(session, dataset_id)
    ctx = {
        "d": d,
        "reviewers": service.reviewers(session, d),
        "creators": service.creators(session, [d]),
        "nav": "datasets",
    }
    return render(request, "datasets/detail.html", ctx)
