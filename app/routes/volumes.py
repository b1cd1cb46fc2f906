"""Volumes: the JSON API (/api/volumes...) and the list and viewer pages (/volumes...).

Uploading is for admins (it adds data every reviewer then sees); browsing and reviewing are
for every logged-in user.
"""

from __future__ import annotations

from urllib.parse import urlencode

from fastapi import APIRouter, Form, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import RedirectResponse, Response
from pydantic import BaseModel

from app.deps import AdminUser, CurrentUser, SessionDep, SettingsDep
from app.errors import DomainError, InvalidInput
from app.imaging.window import PRESETS, parse_window
from app.models import Volume
from app.services.curation import reviews as rv
from app.services.curation import volumes as vs
from app.services.curation.ingest import ingest_file
from app.services.curation.ingest_dicom import DicomIngest, ingest_dicom, upload_out
from app.services.curation.uploads import StagedUpload, receive_upload
from app.services.studies.blinding import guard as blind
from app.templating import is_htmx, render

router = APIRouter()
PNG_CACHE = "private, max-age=3600"


class ReviewIn(BaseModel):
    decision: str
    label: str | None = None
    note: str = ""


def _overlay(value: str | None) -> bool:
    if value in (None, "", "none", "0"):
        return False
    if value in ("mask", "1", "on", "true"):
        return True
    raise InvalidInput(f"overlay must be 'mask' or left out, not {value!r}")


async def _upload(request: Request, session, settings, user) -> Volume | DicomIngest:
    """Stream the multipart body to tmp/, then ingest it off the event loop.

    One NIfTI file gives one Volume; a DICOM zip or several DICOM files give a DicomIngest.
    """
    length = request.headers.get("content-length")
    staged = await receive_upload(
        settings,
        request.headers.get("content-type", ""),
        int(length) if length and length.isdigit() else None,
        request.stream(),
    )
    try:
        if staged.is_dicom:
            return await run_in_threadpool(_ingest_dicom, session, settings, staged, user)
        return await run_in_threadpool(
            ingest_file,
            session,
            settings,
            staged.path("file"),
            staged.path("mask"),
            user,
            staged.filename("file"),
            mask_name=staged.filename("mask"),
            move=True,
        )
    except DomainError:
        if user is not None:  # the service rolled back, expiring the user the error page shows
            session.refresh(user)
        raise
    finally:
        staged.cleanup()


def _ingest_dicom(session, settings, staged: StagedUpload, user) -> DicomIngest:
    return ingest_dicom(
        session,
        settings,
        staged.path("file"),
        staged.path("mask"),
        user,
        name=staged.filename("file"),
        mask_name=staged.filename("mask") or "the mask",
    )


# ---- JSON API ---------------------------------------------------------------------------


@router.get("/api/volumes")
def api_list(session: SessionDep, user: CurrentUser) -> list[dict]:
    volumes = vs.list_volumes(session)
    progress = rv.progress_by_volume(session, volumes)
    return [vs.volume_out(v, progress[v.id]) for v in volumes]


@router.post("/api/volumes", status_code=201)
async def api_upload(
    request: Request, session: SessionDep, settings: SettingsDep, user: AdminUser
) -> dict:
    volume = await _upload(request, session, settings, user)
    if isinstance(volume, DicomIngest):
        return upload_out(volume)  # {"volumes": [...], "skipped": [...], ...}
    return vs.volume_out(volume, rv.progress(session, volume))


@router.get("/api/volumes/{volume_id}")
def api_get(volume_id: int, session: SessionDep, user: CurrentUser) -> dict:
    volume = vs.get_volume(session, volume_id)
    return vs.volume_out(volume, rv.progress(session, volume))


@router.get("/api/volumes/{volume_id}/suggestions")
def api_suggestions(volume_id: int, session: SessionDep, user: CurrentUser) -> list[int]:
    return vs.suggestions(vs.get_volume(session, volume_id))


@router.get("/api/volumes/{volume_id}/slices")
def api_slices(volume_id: int, session: SessionDep, user: CurrentUser) -> list[dict]:
    """Every slice: mask pixel counts and the latest review decision/label (or null)."""
    volume = vs.get_volume(session, volume_id)
    latest = rv.latest_reviews(session, volume.id)
    out = []
    for s in volume.slices:
        r = latest.get((volume.id, s.index))
        out.append(
            {
                "index": s.index,
                "liver_pixels": s.liver_pixels,
                "tumour_pixels": s.tumour_pixels,
                "decision": r.decision if r else None,
                "label": r.label if r else None,
            }
        )
    return out


@router.get("/api/volumes/{volume_id}/slices/{index}.png", dependencies=[blind("volume")])
def api_slice_png(
    volume_id: int,
    index: int,
    session: SessionDep,
    settings: SettingsDep,
    user: CurrentUser,
    window: str = "liver",
    overlay: str | None = None,
) -> Response:
    volume = vs.get_volume(session, volume_id)
    png = vs.render_slice(settings, volume, index, parse_window(window), _overlay(overlay))
    return Response(png, media_type="image/png", headers={"Cache-Control": PNG_CACHE})


@router.put("/api/volumes/{volume_id}/slices/{index}/review")
def api_review(
    volume_id: int, index: int, body: ReviewIn, session: SessionDep, user: CurrentUser
) -> dict:
    volume = vs.get_volume(session, volume_id)
    review = rv.add_review(session, volume, index, user, body.decision, body.label, body.note)
    session.commit()
    return {**rv.review_out(review), "progress": rv.progress(session, volume)}


@router.get("/api/volumes/{volume_id}/slices/{index}/reviews")
def api_history(volume_id: int, index: int, session: SessionDep, user: CurrentUser) -> list[dict]:
    volume = vs.get_volume(session, volume_id)
    vs.check_index(volume, index)
    return [rv.review_out(r) for r in rv.history(session, volume.id, index)]


# ---- HTML pages -------------------------------------------------------------------------


@router.get("/volumes")
def list_page(request: Request, session: SessionDep, settings: SettingsDep, user: CurrentUser):
    volumes = vs.list_volumes(session)
    ctx = {
        "nav": "volumes",
        "volumes": [vs.volume_out(v) for v in volumes],
        "progress": rv.progress_by_volume(session, volumes),
        "previews": {v.id: _middle_slice(v) for v in volumes},
        "max_upload_mb": settings.max_upload_bytes / 1024**2,
    }
    return render(request, "volumes/list.html", ctx, block="volume_table")


@router.post("/volumes")
async def upload_page(
    request: Request, session: SessionDep, settings: SettingsDep, user: AdminUser
) -> Response:
    volume = await _upload(request, session, settings, user)
    if isinstance(volume, DicomIngest):
        volume = volume.volumes[0]  # the first series; the list shows the others
    target = f"/volumes/{volume.id}"
    if is_htmx(request):
        return Response(status_code=200, headers={"HX-Redirect": target})
    return RedirectResponse(target, status_code=303)


def _middle_slice(volume: Volume) -> int:
    """Where the viewer opens: the middle liver slice, else the middle of the volume."""
    suggested = vs.suggestions(volume)
    return suggested[len(suggested) // 2] if suggested else volume.num_slices // 2


def _window_spec(window: str | None, ww: str | None, wl: str | None) -> str:
    if window == "custom":
        return f"{(ww or '').strip()},{(wl or '').strip()}"
    return window or "liver"


def _viewer_context(session, volume: Volume, index: int, window, overlay: bool) -> dict:
    """Everything the viewer shows for one slice: image URL, mask counts, review state."""
    latest = rv.latest_reviews(session, volume.id)
    history = rv.history(session, volume.id, index)
    info = volume.slices[index]
    query = {"window": window.name} | ({"overlay": "mask"} if overlay else {})
    suggested = vs.suggestions(volume)
    return {
        "nav": "volumes",
        "volume": volume,
        "vol": vs.volume_out(volume),
        "index": index,
        "window": window,
        "presets": PRESETS,
        "overlay": overlay,
        "info": info,
        "latest": history[0] if history else None,
        "history": history,
        "label": history[0].label if history else ("tumour" if info.tumour_pixels else "normal"),
        "progress": rv.progress(session, volume),
        "suggested": suggested,
        "tumour_slices": {s.index for s in volume.slices if s.tumour_pixels > 0},
        "states": {k[1]: r.decision for k, r in latest.items()},
        "img_url": f"/api/volumes/{volume.id}/slices/{index}.png?{urlencode(query)}",
        "page_url": f"/volumes/{volume.id}?{urlencode({'slice': index, **query})}",
    }


@router.get("/volumes/{volume_id}", dependencies=[blind("volume")])
def viewer_page(
    request: Request,
    volume_id: int,
    session: SessionDep,
    user: CurrentUser,
    slice: int | None = None,  # noqa: A002 - the query parameter users see
    window: str | None = None,
    ww: str | None = None,
    wl: str | None = None,
    overlay: str | None = None,
):
    volume = vs.get_volume(session, volume_id)
    parsed = parse_window(_window_spec(window, ww, wl))
    index = _middle_slice(volume) if slice is None else min(max(slice, 0), volume.num_slices - 1)
    ctx = _viewer_context(session, volume, index, parsed, _overlay(overlay))
    response = render(request, "volumes/viewer.html", ctx | {"oob": True}, block="slice")
    if is_htmx(request):
        response.headers["HX-Replace-Url"] = ctx["page_url"]
    return response


@router.post("/volumes/{volume_id}/slices/{index}/review")
def review_form(
    request: Request,
    volume_id: int,
    index: int,
    session: SessionDep,
    user: CurrentUser,
    decision: str = Form(""),
    label: str | None = Form(None),
    note: str = Form(""),
    window: str = Form("liver"),
    overlay: str | None = Form(None),
):
    volume = vs.get_volume(session, volume_id)
    rv.add_review(session, volume, index, user, decision, label, note)
    session.commit()
    ctx = _viewer_context(session, volume, index, parse_window(window), _overlay(overlay))
    if not is_htmx(request):
        return RedirectResponse(ctx["page_url"], status_code=303)
    return render(request, "volumes/viewer.html", ctx | {"saved": True}, block="review")
