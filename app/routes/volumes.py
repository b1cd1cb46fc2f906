"""Volumes: the JSON API (/api/volumes...) and the list and viewer pages (/volumes...).

Uploading is for admins (it adds data every reviewer then sees); browsing and reviewing are
for every logged-in user.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import RedirectResponse, Response

from app.deps import AdminUser, CurrentUser, SessionDep, SettingsDep, blind
from app.errors import DomainError, InvalidInput
from app.imaging.window import parse_window
from app.models import Volume
from app.routes import viewer_api
from app.schemas.media import file_response
from app.schemas.volumes import (
    AssignIn,
    AssignOut,
    DicomUploadOut,
    ReviewIn,
    ReviewOut,
    SliceOut,
    VolumeOut,
)
from app.services.curation import agreement as ag
from app.services.curation import reviews as rv
from app.services.curation import volumes as vs
from app.services.curation.ingest import ingest_file
from app.services.curation.ingest_dicom import DicomIngest, ingest_dicom, upload_out
from app.services.curation.second_reads import read_view
from app.services.curation.uploads import StagedUpload, receive_upload
from app.templating import is_htmx, render

router = APIRouter()
router.include_router(viewer_api.router)  # raw slices, HU probe, reformats, presets
PNG_CACHE = "private, max-age=3600"


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
        mask_structure=staged.fields.get("mask_structure") or None,
    )


# ---- JSON API ---------------------------------------------------------------------------


@router.get("/api/volumes", response_model=list[VolumeOut])
def api_list(session: SessionDep, user: CurrentUser, archived: bool = False) -> list[dict]:
    """Unarchived volumes (with `?archived=true`, the archived ones too)."""
    volumes = vs.list_volumes(session, include_archived=archived)
    progress = rv.progress_seen_by(session, volumes, user)
    assigned = rv.assignments(session)
    return [_volume_json(v, progress[v.id], assigned.get(v.id, [])) for v in volumes]


def _volume_json(volume: Volume, progress: dict, reviewers: list) -> dict:
    return {**vs.volume_out(volume, progress), "reviewers": [u.username for u in reviewers]}


@router.post("/api/volumes", status_code=201, response_model=VolumeOut | DicomUploadOut)
async def api_upload(
    request: Request, session: SessionDep, settings: SettingsDep, user: AdminUser
) -> dict:
    volume = await _upload(request, session, settings, user)
    if isinstance(volume, DicomIngest):
        return upload_out(volume)  # {"volumes": [...], "skipped": [...], ...}
    return vs.volume_out(volume, rv.progress(session, volume))


@router.get("/api/volumes/{volume_id}", response_model=VolumeOut)
def api_get(volume_id: int, session: SessionDep, user: CurrentUser, reveal: bool = False) -> dict:
    """The volume, its progress and the reviewers' agreement (kappa); for a blinded reviewer
    both are over their own decisions only."""
    volume = vs.get_volume(session, volume_id)
    assigned = rv.assignments(session, volume.id).get(volume.id, [])
    view = read_view(session, volume, user, reveal)
    kappa = ag.volume_agreement(session, volume.id, view.within())
    return _volume_json(volume, rv.progress_seen(session, volume, view), assigned) | {
        "agreement": kappa
    }


@router.post("/api/volumes/{volume_id}/archive", response_model=VolumeOut)
def api_archive(volume_id: int, session: SessionDep, user: AdminUser) -> dict:
    """Hide from lists and freezes; kept for the audit trail and the versions using it."""
    volume = vs.set_archived(session, vs.get_volume(session, volume_id), user, True)
    return _volume_json(volume, rv.progress(session, volume), [])


@router.post("/api/volumes/{volume_id}/unarchive", response_model=VolumeOut)
def api_unarchive(volume_id: int, session: SessionDep, user: AdminUser) -> dict:
    volume = vs.set_archived(session, vs.get_volume(session, volume_id), user, False)
    return _volume_json(volume, rv.progress(session, volume), [])


@router.delete("/api/volumes/{volume_id}", status_code=204)
def api_delete(
    volume_id: int, session: SessionDep, settings: SettingsDep, user: AdminUser
) -> Response:
    """Files and rows; 409 while a dataset version uses the volume."""
    vs.delete_volume(session, settings, vs.get_volume(session, volume_id), user)
    return Response(status_code=204)


@router.put("/api/volumes/{volume_id}/reviewers", response_model=AssignOut)
def api_assign(volume_id: int, body: AssignIn, session: SessionDep, user: AdminUser) -> dict:
    users = rv.assign(session, vs.get_volume(session, volume_id), body.reviewers, user)
    return {"volume_id": volume_id, "reviewers": [u.username for u in users]}


@router.get("/api/volumes/{volume_id}/suggestions")
def api_suggestions(volume_id: int, session: SessionDep, user: CurrentUser) -> list[int]:
    return vs.suggestions(vs.get_volume(session, volume_id))


@router.get("/api/volumes/{volume_id}/slices", response_model=list[SliceOut])
def api_slices(
    volume_id: int, session: SessionDep, user: CurrentUser, reveal: bool = False
) -> list[dict]:
    """Every slice: mask pixel counts, the latest decision/label (or null), reviewer votes;
    an assigned reviewer sees nothing of the others on the slices they have not decided."""
    volume = vs.get_volume(session, volume_id)
    view = read_view(session, volume, user, reveal)
    latest = rv.latest_reviews(session, volume.id)
    votes = rv.latest_by_reviewer(session, volume.id)
    out = []
    for s in volume.slices:
        r = latest.get((volume.id, s.index))
        v = votes.get((volume.id, s.index), {})
        if not view.shows_others(s.index):
            r, v = None, {}
        out.append(
            {
                "index": s.index,
                "liver_pixels": s.liver_pixels,
                "tumour_pixels": s.tumour_pixels,
                "decision": r.decision if r else None,
                "label": r.label if r else None,
                "reviewers": len(v),
                "approvals": sum(x.decision == "approved" for x in v.values()),
            }
        )
    return out


@router.get(
    "/api/volumes/{volume_id}/slices/{index}.png",
    dependencies=[blind("volume")],
    **file_response("image/png", "the axial slice, windowed (8-bit grayscale)"),
)
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


@router.put("/api/volumes/{volume_id}/slices/{index}/review", response_model=ReviewOut)
def api_review(
    volume_id: int,
    index: int,
    body: ReviewIn,
    session: SessionDep,
    settings: SettingsDep,
    user: CurrentUser,
) -> dict:
    """Store a decision on this slice; 409 when `expected` is not the caller's own decision
    there; the same decision again stores nothing (`created` false)."""
    viewer_api.slow_review(settings)
    volume = vs.get_volume(session, volume_id)
    vs.check_index(volume, index)
    before = rv.own_latest(session, volume.id, index, user.id)
    review = rv.add_review(
        session, volume, index, user, body.decision, body.label, body.note, body.expected
    )
    created = before is None or before.id != review.id
    progress = rv.progress_seen(session, volume, read_view(session, volume, user))
    return {**rv.review_out(review), "progress": progress, "created": created}


@router.get("/api/volumes/{volume_id}/slices/{index}/reviews", response_model=list[ReviewOut])
def api_history(
    volume_id: int, index: int, session: SessionDep, user: CurrentUser, reveal: bool = False
) -> list[dict]:
    """Every decision on the slice, newest first (none for an assigned reviewer who has not
    decided it yet)."""
    volume = vs.get_volume(session, volume_id)
    vs.check_index(volume, index)
    if not read_view(session, volume, user, reveal).shows_others(index):
        return []
    return [rv.review_out(r) for r in rv.history(session, volume.id, index)]


# ---- HTML pages -------------------------------------------------------------------------


@router.get("/volumes")
def list_page(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    user: CurrentUser,
    archived: bool = False,
):
    volumes = vs.list_volumes(session, include_archived=archived)
    ctx = {
        "nav": "volumes",
        "volumes": [vs.volume_out(v) for v in volumes],
        "archived": archived,
        "assigned": {k: [u.username for u in us] for k, us in rv.assignments(session).items()},
        "progress": rv.progress_seen_by(session, volumes, user),
        "previews": {v.id: viewer_api._middle_slice(v) for v in volumes},
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
