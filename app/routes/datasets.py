"""Dataset versions: compose and freeze approved slices (optionally a patient-level split),
list, inspect, download the zip, thumbnails.

Any logged-in user may freeze: radiologists curate, a freeze only adds immutable versions
(nothing is overwritten or deleted), and every freeze is audited."""

from __future__ import annotations

import re
from typing import Annotated

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import FileResponse, RedirectResponse, Response

from app.deps import CurrentUser, SessionDep, SettingsDep, blind
from app.errors import InvalidInput
from app.models import DatasetVersion
from app.schemas.datasets import (
    Composition,
    DatasetDetail,
    DatasetSummary,
    FreezeIn,
    PreviewOut,
    SplitOut,
)
from app.schemas.media import file_response
from app.services.accounts.users import list_users
from app.services.curation import agreement as ag
from app.services.curation import composition as comp
from app.services.curation import datasets as service
from app.services.curation import version_views as views
from app.services.curation.export import image_name
from app.services.curation.volumes import list_volumes
from app.templating import is_htmx, render

router = APIRouter()


def summary(d: DatasetVersion) -> dict:
    return {
        "id": d.id,
        "name": d.name,
        "resolution": d.resolution,
        "window": d.window,
        "window_width": d.window_width,
        "window_level": d.window_level,
        "bit_depth": d.bit_depth,
        "masks": d.masks,
        "split": d.split,
        "split_group": d.split_group,
        "content_hash": d.content_hash,
        "num_images": d.num_images,
        "num_tumour": d.num_tumour,
        "volume_ids": service.version_volume_ids(d),
        "created_at": d.created_at.isoformat(),
        "created_by_id": d.created_by_id,
        "zip_url": f"/api/datasets/{d.id}/export.zip",
    }


def detail(session, d: DatasetVersion) -> dict:
    """The version, its items and the reviewers' agreement (kappa) on its source volumes."""
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
    agreement = ag.dataset_agreement(session, d)
    return {**summary(d), "composition": d.composition, "items": items, "agreement": agreement}


def _download_name(d: DatasetVersion) -> str:
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", d.name).strip("-.")[:60] or "dataset"
    return f"medsynth-{d.id}-{slug}.zip"


def _filters(body: Composition) -> comp.Filters:
    ids = tuple(body.volume_ids) if body.volume_ids is not None else None
    return comp.Filters(ids, body.label or None, body.reviewer or None, body.min_reviewers)


@router.post("/api/datasets", status_code=201, response_model=DatasetDetail | SplitOut)
def api_freeze(
    session: SessionDep, settings: SettingsDep, user: CurrentUser, body: FreezeIn
) -> dict:
    """One version, or with `split` {"versions": {"train", "val", "test"}} (null when empty)."""
    args = (session, settings, body.name, body.resolution, body.window, body.bit_depth, user)
    options = {"filters": _filters(body), "masks": body.masks}
    if body.split is None:
        return detail(session, service.freeze_dataset(*args, **options))
    split = comp.Split(body.split.val, body.split.test, body.split.seed)
    versions = service.freeze_split(*args, split=split, **options)
    return {"versions": {k: detail(session, v) if v else None for k, v in versions.items()}}


@router.post("/api/datasets/preview", response_model=PreviewOut)
def api_preview(session: SessionDep, user: CurrentUser, body: Composition) -> dict:
    """What a freeze with these volumes and filters would take, before freezing."""
    return comp.preview(session, _filters(body))


@router.get("/api/datasets", response_model=list[DatasetSummary])
def api_list(session: SessionDep, user: CurrentUser) -> list[dict]:
    return [summary(d) for d in service.list_datasets(session)]


@router.get("/api/datasets/{dataset_id}", response_model=DatasetDetail)
def api_get(session: SessionDep, user: CurrentUser, dataset_id: int) -> dict:
    return detail(session, service.get_dataset(session, dataset_id))


@router.get(
    "/api/datasets/{dataset_id}/export.zip",
    dependencies=[blind("dataset")],
    **file_response("application/zip", "the dataset zip (StyleGAN2-ADA layout)"),
)
def api_zip(
    session: SessionDep, settings: SettingsDep, user: CurrentUser, dataset_id: int
) -> Response:
    path = service.dataset_zip(session, settings, dataset_id)
    name = _download_name(service.get_dataset(session, dataset_id))
    return FileResponse(path, media_type="application/zip", filename=name)


@router.get(
    "/api/datasets/{dataset_id}/thumbs/{position}.png",
    dependencies=[blind("dataset")],
    **file_response("image/png", "one image of the version"),
)
def api_thumb(
    session: SessionDep, settings: SettingsDep, user: CurrentUser, dataset_id: int, position: int
) -> Response:
    png = views.thumbnail(session, settings, dataset_id, position)
    # A version never changes, so its images may be cached for good (per user: private).
    headers = {"Cache-Control": "private, max-age=31536000, immutable"}
    return Response(png, media_type="image/png", headers=headers)


# ---- HTML ---------------------------------------------------------------------------------


def _form_filters(volume_ids, label, reviewer, min_reviewers) -> comp.Filters:
    return comp.Filters(tuple(volume_ids), label or None, reviewer or None, min_reviewers)


@router.get("/datasets")
def datasets_page(request: Request, session: SessionDep, user: CurrentUser) -> Response:
    datasets = service.list_datasets(session)
    volumes = list_volumes(session)
    real = [v.id for v in volumes if not v.is_demo]
    chosen = real or [v.id for v in volumes]  # demo phantoms stay out unless there is nothing else
    ctx = {
        "datasets": datasets,
        "volumes": volumes,
        "chosen": set(chosen),
        "preview": comp.preview(session, comp.Filters(tuple(chosen))) if chosen else None,
        "reviewers": [u.username for u in list_users(session)],
        "creators": views.creators(session, datasets),
        "resolutions": service.RESOLUTIONS,
        "presets": service.PRESETS,
        "nav": "datasets",
    }
    return render(request, "datasets/list.html", ctx)


@router.get("/datasets/preview")
def preview_fragment(
    request: Request,
    session: SessionDep,
    user: CurrentUser,
    volume_ids: Annotated[list[int], Query()] = [],  # noqa: B006 - FastAPI copies defaults
    label: str = "",
    reviewer: str = "",
    min_reviewers: int = 1,
) -> Response:
    """The counts the freeze form would take (htmx swaps them in on every change)."""
    preview = None
    if volume_ids:
        preview = comp.preview(session, _form_filters(volume_ids, label, reviewer, min_reviewers))
    return render(request, "datasets/list.html", {"preview": preview}, block="preview")


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
    volume_ids: Annotated[list[int], Form()] = [],  # noqa: B006
    label: Annotated[str, Form()] = "",
    reviewer: Annotated[str, Form()] = "",
    min_reviewers: Annotated[int, Form()] = 1,
    masks: Annotated[bool, Form()] = False,
    split_val: Annotated[float, Form()] = 0.0,
    split_test: Annotated[float, Form()] = 0.0,
    split_seed: Annotated[int, Form()] = 0,
) -> Response:
    if not volume_ids:
        raise InvalidInput("choose at least one volume to freeze")
    spec = custom_window if window == "custom" else window
    args = (session, settings, name, resolution, spec, bit_depth, user)
    options = {"filters": _form_filters(volume_ids, label, reviewer, min_reviewers), "masks": masks}
    if split_val or split_test:
        split = comp.Split(split_val, split_test, split_seed)
        versions = service.freeze_split(*args, split=split, **options)
        target = f"/datasets/{versions['train'].id}"
    else:
        target = f"/datasets/{service.freeze_dataset(*args, **options).id}"
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
        "siblings": service.split_siblings(session, d),
        "reviewers": views.reviewers(session, d, user),
        "creators": views.creators(session, [d]),
        "agreement": ag.dataset_agreement(session, d),
        "nav": "datasets",
    }
    return render(request, "datasets/detail.html", ctx)
