"""Reader studies: the JSON API, the blinded image URL, and the list, read and results pages."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import RedirectResponse, Response
from sqlalchemy import select

from app.deps import AdminUser, CurrentUser, SessionDep, SettingsDep
from app.errors import DomainError, InvalidInput
from app.models import DatasetVersion, User
from app.presentation.study_charts import roc_svg
from app.schemas.media import file_response
from app.schemas.studies import (
    AnswerIn,
    AnswerOut,
    NextOut,
    ReaderStudyOut,
    ResultsOut,
    StudyIn,
    StudyOut,
)
from app.services.studies import blinding, reading
from app.services.studies import form as study_form
from app.services.studies import manage as svc
from app.services.studies import results as study_results
from app.templating import is_htmx, render

router = APIRouter()

# The same headers for every study image, whatever its class: no name, no validators.
IMAGE_HEADERS = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"}


def _image(data: bytes) -> Response:
    return Response(data, media_type="image/png", headers=IMAGE_HEADERS)


# --- JSON ----------------------------------------------------------------------------------------


def _wake(request: Request) -> None:
    """Let the monitor's thread start the study's images now, not at its next pass."""
    monitor = getattr(request.app.state, "monitor", None)
    if monitor is not None:
        monitor.wake()


@router.post("/api/studies", status_code=201, response_model=StudyOut)
def api_create(
    request: Request, session: SessionDep, settings: SettingsDep, admin: AdminUser, body: StudyIn
) -> dict:
    """Returns at once with state "preparing"; poll until "open" (or "failed", with the reason)."""
    study = svc.create_study(session, settings, admin, svc.StudyRequest(**body.model_dump()))
    _wake(request)
    return svc.study_summary(session, study)


@router.post("/api/studies/{study_id}/retry", response_model=StudyOut)
def api_retry(request: Request, session: SessionDep, admin: AdminUser, study_id: int) -> dict:
    study = svc.retry_study(session, study_id, admin)
    _wake(request)
    return svc.study_summary(session, study)


@router.delete("/api/studies/{study_id}", status_code=204)
def api_delete(session: SessionDep, settings: SettingsDep, admin: AdminUser, study_id: int) -> None:
    svc.delete_study(session, settings, study_id, admin)


@router.get("/api/studies", response_model=list[StudyOut] | list[ReaderStudyOut])
def api_list(session: SessionDep, user: CurrentUser) -> list[dict]:
    return svc.list_studies(session, user)


@router.get("/api/studies/{study_id}", response_model=StudyOut | ReaderStudyOut)
def api_get(session: SessionDep, user: CurrentUser, study_id: int) -> dict:
    study = svc.get_study(session, study_id)
    if user.is_admin:
        return svc.study_summary(session, study)
    return svc.reader_summary(session, svc.reader_of(session, study, user))


@router.get(
    "/api/studies/{study_id}/next",
    response_model=NextOut | None,
    responses={204: {"description": "every image answered"}},
)
def api_next(session: SessionDep, user: CurrentUser, study_id: int) -> NextOut | Response:
    nxt = reading.next_trial(session, study_id, user)
    if nxt.token is None:
        return Response(status_code=204)
    return NextOut(trial=nxt.token, image=nxt.image_url or "", answered=nxt.answered,
                   total=nxt.total)  # fmt: skip


@router.post("/api/studies/{study_id}/answers", response_model=AnswerOut)
def api_answer(session: SessionDep, user: CurrentUser, study_id: int, body: AnswerIn) -> AnswerOut:
    reading.answer(session, study_id, user, body.trial, body.rating, body.usable, body.comment,
                   body.client_ms)  # fmt: skip
    return AnswerOut(trial=body.trial, recorded=True)


@router.get("/api/studies/{study_id}/results", response_model=ResultsOut)
def api_results(session: SessionDep, user: CurrentUser, study_id: int) -> dict:
    return study_results.results(session, study_id, user)


@router.get(
    "/api/studies/{study_id}/answers.csv",
    **file_response("text/csv", "every answer, one row per answered trial"),
)
def api_csv(session: SessionDep, admin: AdminUser, study_id: int) -> Response:
    text = study_results.answers_csv(session, study_id)
    disposition = f'attachment; filename="study-{study_id}-answers.csv"'
    return Response(text, media_type="text/csv", headers={"Content-Disposition": disposition})


@router.post("/api/studies/{study_id}/close", response_model=StudyOut)
def api_close(session: SessionDep, admin: AdminUser, study_id: int) -> dict:
    study = svc.close_study(session, study_id, admin)
    return svc.study_summary(session, study)


@router.post("/api/studies/{study_id}/readers/{username}/remove", response_model=StudyOut)
def api_remove_reader(session: SessionDep, admin: AdminUser, study_id: int, username: str) -> dict:
    svc.remove_reader(session, study_id, username, admin)
    return svc.study_summary(session, svc.get_study(session, study_id))


# --- images --------------------------------------------------------------------------------------


@router.get("/study-images/{token}")
def trial_image(session: SessionDep, user: CurrentUser, token: str) -> Response:
    return _image(reading.trial_image(session, user, token))


@router.get("/studies/{study_id}/images/{image_id}.png")
def admin_image(session: SessionDep, admin: AdminUser, study_id: int, image_id: int) -> Response:
    return _image(study_results.study_image(session, study_id, image_id))


# --- pages ---------------------------------------------------------------------------------------


def _form_context(session, snapshot_id: int | None = None, real_id: int | None = None) -> dict:
    """The new-study form: choices, and defaults that fit the chosen snapshot."""
    d = study_form.defaults(session, snapshot_id, real_id)
    return {
        "snapshots": study_form.snapshot_choices(session),
        "datasets": session.scalars(select(DatasetVersion).order_by(DatasetVersion.id.desc())),
        "reviewers": session.scalars(
            select(User).where(User.role == "reviewer", User.is_active).order_by(User.username)
        ),
        "defaults": d,
    }


def _list_page(request: Request, session, user: User, status: int = 200, **ctx) -> Response:
    ctx = {"studies": svc.list_studies(session, user), "nav": "studies", **ctx}
    ctx.setdefault("reading", bool(blinding.unfinished(session, user)))
    if user.is_admin:
        form_ctx = _form_context(session, ctx.get("form", {}).get("snapshot_id"))
        ctx = {**form_ctx, **ctx}
        ctx.setdefault("form", form_ctx["defaults"].values())
    return render(request, "studies/list.html", ctx, status_code=status)


@router.get("/studies/form")
def form_partial(
    request: Request,
    session: SessionDep,
    admin: AdminUser,
    snapshot_id: int | None = None,
    holdout_dataset_id: str = "",
    name: str = "",
    truncation: str = "",
    readers: Annotated[list[int], Query()] = [],  # noqa: B006  (FastAPI copies defaults)
    rate_usable: bool = False,
) -> Response:
    """The form re-filled for another snapshot or real source (htmx swaps the fields); what
    the user typed that does not depend on the snapshot (name, ψ, readers) is kept."""
    real = int(holdout_dataset_id) if holdout_dataset_id.isdigit() else None
    ctx = _form_context(session, snapshot_id, real)
    try:
        psi = float(truncation)
    except ValueError:
        psi = 1.0
    kept = {"name": name, "truncation": psi, "readers": readers,
            "rate_usable": rate_usable}  # fmt: skip
    ctx |= {"form": ctx["defaults"].values() | kept, "nav": "studies", "studies": []}
    if not is_htmx(request):
        return RedirectResponse("/studies", status_code=303)
    return render(request, "studies/list.html", ctx, block="study_form")


@router.get("/studies")
def studies_page(request: Request, session: SessionDep, user: CurrentUser) -> Response:
    return _list_page(request, session, user)


@router.post("/studies")
def create_form(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    admin: AdminUser,
    snapshot_id: Annotated[int, Form()],
    dataset_id: Annotated[int, Form()],
    n_real: Annotated[int, Form()],
    n_fake: Annotated[int, Form()],
    truncation: Annotated[float, Form()] = 1.0,
    readers: Annotated[list[int], Form()] = [],  # noqa: B006  (FastAPI copies defaults)
    rate_usable: Annotated[bool, Form()] = False,
    name: Annotated[str, Form()] = "",
    holdout_dataset_id: Annotated[str, Form()] = "",
    label: Annotated[str, Form()] = "",
) -> Response:
    try:
        holdout = int(holdout_dataset_id) if holdout_dataset_id else None
        mix = True if label == "mix" else None
        cls = int(label) if label not in ("", "mix") else None
        req = svc.StudyRequest(snapshot_id, dataset_id, n_real, n_fake, list(readers),
                               truncation, rate_usable, name, holdout, cls, mix)  # fmt: skip
        study = svc.create_study(session, settings, admin, req)
    except (DomainError, ValueError) as exc:
        detail = exc.detail if isinstance(exc, DomainError) else "holdout and label are numbers"
        status = exc.status_code if isinstance(exc, DomainError) else InvalidInput.status_code
        form = {"name": name, "snapshot_id": snapshot_id, "dataset_id": dataset_id,
                "n_real": n_real, "n_fake": n_fake, "truncation": truncation,
                "readers": readers, "rate_usable": rate_usable,
                "holdout_dataset_id": holdout_dataset_id, "label": label}  # fmt: skip
        return _list_page(request, session, admin, status, error=detail, form=form)
    _wake(request)
    return RedirectResponse(f"/studies#study-{study.id}", status_code=303)


@router.get("/studies/{study_id}/row")
def study_row(request: Request, session: SessionDep, admin: AdminUser, study_id: int) -> Response:
    """One row of the studies table: htmx polls it while the study's images are made."""
    s = svc.study_summary(session, svc.get_study(session, study_id))
    return render(request, "studies/_row.html", {"s": s})


@router.post("/studies/{study_id}/retry")
def retry_form(request: Request, session: SessionDep, admin: AdminUser, study_id: int) -> Response:
    svc.retry_study(session, study_id, admin)
    _wake(request)
    return RedirectResponse(f"/studies#study-{study_id}", status_code=303)


@router.post("/studies/{study_id}/delete")
def delete_form(
    session: SessionDep, settings: SettingsDep, admin: AdminUser, study_id: int
) -> Response:
    svc.delete_study(session, settings, study_id, admin)
    return RedirectResponse("/studies", status_code=303)


@router.post("/studies/{study_id}/close")
def close_form(session: SessionDep, admin: AdminUser, study_id: int) -> Response:
    svc.close_study(session, study_id, admin)
    return RedirectResponse("/studies", status_code=303)


def _read_page(request: Request, session, user: User, study_id: int) -> Response:
    nxt = reading.next_trial(session, study_id, user)
    response = render(request, "studies/read.html", {"next": nxt}, block="trial")
    response.headers["Cache-Control"] = "no-store"
    return response


@router.get("/studies/{study_id}/read")
def read_page(request: Request, session: SessionDep, user: CurrentUser, study_id: int) -> Response:
    return _read_page(request, session, user, study_id)


@router.post("/studies/{study_id}/read")
def read_answer(
    request: Request,
    session: SessionDep,
    user: CurrentUser,
    study_id: int,
    trial: Annotated[str, Form()],
    rating: Annotated[int, Form(ge=1, le=5)],
    usable: Annotated[bool, Form()] = False,
    comment: Annotated[str, Form()] = "",
    client_ms: Annotated[int | None, Form()] = None,
) -> Response:
    """Record the answer, then show the next image (the htmx swap replaces only the trial)."""
    reading.answer(session, study_id, user, trial, rating, usable, comment, client_ms)
    return _read_page(request, session, user, study_id)


@router.get("/studies/{study_id}/results")
def results_page(
    request: Request, session: SessionDep, user: CurrentUser, study_id: int
) -> Response:
    data = study_results.results(session, study_id, user)
    st = data["statistics"]
    roc = roc_svg(st["roc"], st["pooled"]["auc"])
    return render(request, "studies/results.html", {"r": data, "roc": roc, "nav": "studies"})
