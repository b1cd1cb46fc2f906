"""The slice viewer: its page and review panel (HTML), and the small JSON/binary endpoints it
reads — raw slices for client-side windowing, the HU probe, reformats, the user's presets.

Included by app/routes/volumes.py, so the volume URLs stay in one router."""

from __future__ import annotations

import time
from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Form, Request
from fastapi.responses import RedirectResponse, Response

from app.deps import AdminUser, CurrentUser, SessionDep, SettingsDep, blind
from app.errors import InvalidInput
from app.imaging.window import Window, parse_window
from app.models import User, Volume
from app.schemas.media import file_response
from app.schemas.volumes import Agreement, ProbeOut, ViewerSettingsIO
from app.services.accounts.users import list_users
from app.services.curation import agreement as ag
from app.services.curation import reviews as rv
from app.services.curation import viewer as vw
from app.services.curation import volumes as vs
from app.services.curation.second_reads import ReadView, read_view
from app.settings import Settings
from app.templating import is_htmx, render

router = APIRouter()
RAW_CACHE = "private, max-age=3600"  # cache files never change once written


@router.get(
    "/api/volumes/{volume_id}/slices/{index}.raw",
    dependencies=[blind("volume")],
    **file_response("application/octet-stream", "int16 HU slices, little-endian, row-major"),
)
def api_raw_slices(
    volume_id: int,
    index: int,
    session: SessionDep,
    settings: SettingsDep,
    user: CurrentUser,
    count: int = 1,
    mask: bool = False,
) -> Response:
    """Slices index.. (up to `count`) display-oriented, row-major: all int16 LE HU, then with
    `?mask=true` all uint8 labels. The viewer windows them itself, so dragging W/L never
    waits for the server. X-Count says how many slices came (fewer at the end)."""
    volume = vs.get_volume(session, volume_id)
    data, n = vw.raw_block(settings, volume, index, count, mask)
    headers = {
        "Cache-Control": RAW_CACHE,
        "X-Rows": str(volume.shape[1]),
        "X-Cols": str(volume.shape[0]),
        "X-Count": str(n),
    }
    # Not gzipped: level 1 costs ~20 ms per MB of CT on a busy CPU, more than loopback or a
    # LAN saves; a reverse proxy may compress for remote readers.
    return Response(data, media_type="application/octet-stream", headers=headers)


@router.get(
    "/api/volumes/{volume_id}/slices/{index}/probe",
    response_model=ProbeOut,
    dependencies=[blind("volume")],
)
def api_probe(
    volume_id: int,
    index: int,
    row: int,
    col: int,
    session: SessionDep,
    settings: SettingsDep,
    user: CurrentUser,
) -> dict:
    """HU, RAS position in mm and mask label under the cursor (display row / column)."""
    return vw.probe(settings, vs.get_volume(session, volume_id), index, row, col)


@router.get(
    "/api/volumes/{volume_id}/slices/{index}/agreement",
    response_model=Agreement,
)
def api_agreement(
    volume_id: int, index: int, session: SessionDep, user: CurrentUser, reveal: bool = False
) -> dict:
    """How the reviewers' latest decisions on one slice agree (for an assigned reviewer, only
    once they have decided the slice themselves: until then, their own vote alone)."""
    volume = vs.get_volume(session, volume_id)
    vs.check_index(volume, index)
    votes = rv.latest_by_reviewer(session, volume.id).get((volume.id, index), {})
    if not read_view(session, volume, user, reveal).shows_others(index):
        votes = {}
    return rv.agreement(votes)


@router.get(
    "/api/volumes/{volume_id}/reformat/{plane}.png",
    dependencies=[blind("volume")],
    **file_response("image/png", "the coronal or sagittal reformat, windowed"),
)
def api_reformat(
    volume_id: int,
    plane: str,
    session: SessionDep,
    settings: SettingsDep,
    user: CurrentUser,
    at: int | None = None,
    window: str = "liver",
) -> Response:
    """Coronal (through y = at) or sagittal (through x = at) plane, superior up."""
    volume = vs.get_volume(session, volume_id)
    png = vw.reformat_png(settings, volume, plane, at, _window(session, user, window))
    return Response(png, media_type="image/png", headers={"Cache-Control": RAW_CACHE})


@router.get("/api/viewer/settings", response_model=ViewerSettingsIO)
def api_get_settings(session: SessionDep, user: CurrentUser) -> dict:
    return vw.viewer_settings(session, user)


@router.put("/api/viewer/settings", response_model=ViewerSettingsIO)
def api_put_settings(body: ViewerSettingsIO, session: SessionDep, user: CurrentUser) -> dict:
    """Replace the user's own presets and default window."""
    presets = [p.model_dump() for p in body.presets]
    return vw.save_viewer_settings(session, user, body.default_window, presets)


# ---- HTML ---------------------------------------------------------------------------------


def _window(session, user: User, name: str | None, ww=None, wl=None) -> Window:
    """A built-in or the user's preset by name, "custom" with ww/wl, or any "W,L"."""
    if not name:
        return vw.user_window(session, user) or vw.VIEWER_PRESETS["liver"]
    if name == "custom":
        return parse_window(f"{(ww or '').strip()},{(wl or '').strip()}")
    if name in vw.VIEWER_PRESETS:
        return vw.VIEWER_PRESETS[name]
    for p in vw.viewer_settings(session, user)["presets"]:
        if p["name"] == name:
            return Window(name, float(p["width"]), float(p["level"]))
    return parse_window(name)


def slow_review(settings: Settings) -> None:
    """Tests only: answer a review as late as a loaded server would (review_delay_ms)."""
    if settings.review_delay_ms:
        time.sleep(settings.review_delay_ms / 1000)


def _middle_slice(volume: Volume) -> int:
    """Where the viewer opens: the middle liver slice, else the middle of the volume."""
    suggested = vs.suggestions(volume)
    return suggested[len(suggested) // 2] if suggested else volume.num_slices // 2


def _panel_context(session, volume: Volume, index: int, view: ReadView) -> dict:
    """The review panel of one slice: decision, history, reviewers' agreement; a blinded
    reviewer sees none of the others' until they have decided the slice."""
    shows = view.shows_others(index)
    history = rv.history(session, volume.id, index) if shows else []
    info = volume.slices[index]
    votes = rv.latest_by_reviewer(session, volume.id).get((volume.id, index), {}) if shows else {}
    mine = rv.own_latest(session, volume.id, index, view.user_id)
    return {
        "volume": volume,
        "index": index,
        "info": info,
        "latest": history[0] if history else None,
        "mine": mine,
        "blinded": view.blinded,
        "history": history,
        "agreement": rv.agreement(votes) if votes else None,
        "label": history[0].label if history else ("tumour" if info.tumour_pixels else "normal"),
        "progress": rv.progress_seen(session, volume, view),
    }


def _presets(session, user: User) -> list[dict]:
    built_in = [
        {"name": w.name, "width": w.width, "level": w.level, "own": False}
        for w in vw.VIEWER_PRESETS.values()
    ]
    own = [{**p, "own": True} for p in vw.viewer_settings(session, user)["presets"]]
    return built_in + own


def _map(session, volume: Volume, view: ReadView) -> list[list[int]]:
    """Per slice [liver px > 0, tumour px > 0, decision shown, own decision], decisions coded
    0 none / 1 approved / 2 rejected; a blinded reviewer is shown their own decisions only."""
    mine = rv.own_decisions(session, volume.id, view.user_id)
    latest = {} if view.blinded else rv.latest_reviews(session, volume.id)
    codes = {"approved": 1, "rejected": 2}

    def code(review) -> int:
        return codes.get(getattr(review, "decision", None), 0)

    own = [code(mine.get(s.index)) for s in volume.slices]
    return [
        [
            int(s.liver_pixels > 0),
            int(s.tumour_pixels > 0),
            own[s.index] if view.blinded else code(latest.get((volume.id, s.index))),
            own[s.index],
        ]
        for s in volume.slices
    ]


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
    reveal: bool = False,
):
    volume = vs.get_volume(session, volume_id)
    win = _window(session, user, window, ww, wl)
    index = _middle_slice(volume) if slice is None else min(max(slice, 0), volume.num_slices - 1)
    view = read_view(session, volume, user, reveal)
    ctx = _panel_context(session, volume, index, view) | {
        "nav": "volumes",
        "vol": vs.volume_out(volume),
        "window": win,
        "presets": _presets(session, user),
        "overlay": overlay not in (None, "", "none", "0") and volume.has_mask,
        "map": _map(session, volume, view),
        "reveal": reveal,
        "can_reveal": user.is_admin and (view.blinded or reveal),
        "kappa": ag.volume_agreement(session, volume.id, view.within()),
        "reviewers": [u.username for u in rv.assignments(session, volume.id).get(volume.id, [])],
        "users": [u.username for u in list_users(session) if u.is_active] if user.is_admin else [],
        "prefs": vw.viewer_settings(session, user),
    }
    return render(request, "volumes/viewer.html", ctx)


@router.post("/volumes/{volume_id}/reviewers")
def assign_form(
    volume_id: int,
    session: SessionDep,
    user: AdminUser,
    reviewers: Annotated[list[str], Form()] = [],  # noqa: B006 - FastAPI copies defaults
) -> Response:
    """The admin's assignment form on the viewer page."""
    rv.assign(session, vs.get_volume(session, volume_id), reviewers, user)
    return RedirectResponse(f"/volumes/{volume_id}", status_code=303)


@router.get("/volumes/{volume_id}/slices/{index}/panel", dependencies=[blind("volume")])
def review_panel(
    request: Request,
    volume_id: int,
    index: int,
    session: SessionDep,
    user: CurrentUser,
    reveal: bool = False,
):
    """The review panel for one slice (the viewer swaps it in after a scroll pauses)."""
    volume = vs.get_volume(session, volume_id)
    vs.check_index(volume, index)
    if not is_htmx(request):  # the panel lives on the viewer page: open that at this slice
        return RedirectResponse(f"/volumes/{volume.id}?slice={index}", status_code=303)
    ctx = _panel_context(session, volume, index, read_view(session, volume, user, reveal))
    return render(request, "volumes/viewer.html", ctx, block="review")


@router.post("/volumes/{volume_id}/slices/{index}/review")
def review_form(
    request: Request,
    volume_id: int,
    index: int,
    session: SessionDep,
    settings: SettingsDep,
    user: CurrentUser,
    decision: str = Form(""),
    label: str | None = Form(None),
    note: str = Form(""),
    expected: str | None = Form(None),
    reveal: bool = False,
):
    """Store a decision and answer the updated panel (a plain form post goes back to the
    slice). An empty decision (e.g. Enter in the note field) is refused: nothing stored."""
    if not decision:
        raise InvalidInput("choose Approve or Reject: nothing was stored")
    slow_review(settings)
    volume = vs.get_volume(session, volume_id)
    rv.add_review(session, volume, index, user, decision, label, note, expected or None)
    if request.headers.get("HX-Request") != "true":
        query = urlencode({"slice": index} | ({"reveal": 1} if reveal else {}))
        return RedirectResponse(f"/volumes/{volume.id}?{query}", status_code=303)
    view = read_view(session, volume, user, reveal)
    ctx = _panel_context(session, volume, index, view) | {"saved": True}
    return render(request, "volumes/viewer.html", ctx, block="review")
