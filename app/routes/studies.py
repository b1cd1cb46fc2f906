"""Reader studies: the JSON API, the blinded image URL, and the list, read and results pages."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import RedirectResponse, Response
from pydantic import BaseModel, Field
from sqlalchemy import select

from app.deps import AdminUser, CurrentUser, SessionDep, SettingsDep
from app.errors import DomainError, InvalidInput
from app.models import DatasetVersion, Job, Snapshot, User
from app.services.studies import manage as svc
from app.services.studies import reading
from app.services.studies import results as study_results
from app.templating import render

router = APIRouter()

# The same headers for every study image, whatever its class: no name, no validators.
IMAGE_HEADERS = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"}


class StudyIn(BaseModel):
    snapshot_id: int
    dataset_id: int
    n_real: int = Field(ge=1)
    n_fake: int = Field(ge=1)
    readers: list[str | int]
    truncation: float = 1.0
    rate_usable: bool = False
    name: str = ""
    holdout_dataset_id: int | None = None
    label: int | None = None


class AnswerIn(BaseModel):
    trial: str
    rating: int = Field(ge=1, le=5)
    usable: bool | None = None
    comment: str = ""
    client_ms: int | None = None


def _image(data: bytes) -> Response:
    return Response(data, media_type="image/png", headers=IMAGE_HEADERS)


# --- JSON ----------------------------------------------------------------------------------------


@router.post("/api/studies", status_code=201)
def api_create(session: SessionDep, settings: SettingsDep, admin: AdminUser, body: StudyIn) -> dict:
    study = svc.create_study(session, settings, admin, svc.StudyRequest(**body.model_dump()))
    session.commit()
    return svc.study_summary(session, study)


@router.get("/api/studies")
def api_list(session: SessionDep, user: CurrentUser) -> list[dict]:
    return svc.list_studies(session, user)


@router.get("/api/studies/{study_id}")
def api_get(session: SessionDep, user: CurrentUser, study_id: int) -> dict:
    study = svc.get_study(session, study_id)
    if user.is_admin:
        return svc.study_summary(session, study)
    return svc.reader_summary(session, svc.reader_of(session, study, user))


@router.get("/api/studies/{study_id}/next", response_model=None)
def api_next(session: SessionDep, user: CurrentUser, study_id: int) -> dict | Response:
    nxt = reading.next_trial(session, study_id, user)
    session.commit()
    if nxt.token is None:
        return Response(status_code=204)
    return {
        "trial": nxt.token,
        "image": nxt.image_url,
        "answered": nxt.answered,
        "total": nxt.total,
    }


@router.post("/api/studies/{study_id}/answers")
def api_answer(session: SessionDep, user: CurrentUser, study_id: int, body: AnswerIn) -> dict:
    reading.answer(session, study_id, user, body.trial, body.rating, body.usable, body.comment,
                   body.client_ms)  # fmt: skip
    session.commit()
    return {"trial": body.trial, "recorded": True}


@router.get("/api/studies/{study_id}/results")
def api_results(session: SessionDep, user: CurrentUser, study_id: int) -> dict:
    return study_results.results(session, study_id, user)


@router.get("/api/studies/{study_id}/answers.csv")
def api_csv(session: SessionDep, admin: AdminUser, study_id: int) -> Response:
    text = study_results.answers_csv(session, study_id)
    disposition = f'attachment; filename="study-{study_id}-answers.csv"'
    return Response(text, media_type="text/csv", headers={"Content-Disposition": disposition})


@router.post("/api/studies/{study_id}/close")
def api_close(session: SessionDep, admin: AdminUser, study_id: int) -> dict:
    study = svc.close_study(session, study_id, admin)
    session.commit()
    return svc.study_summary(session, study)


@router.post("/api/studies/{study_id}/readers/{username}/remove")
def api_remove_reader(session: SessionDep, admin: AdminUser, study_id: int, username: str) -> dict:
    svc.remove_reader(session, study_id, username, admin)
    session.commit()
    return svc.study_summary(session, svc.get_study(session, study_id))


# --- images --------------------------------------------------------------------------------------


@router.get("/study-images/{token}")
def trial_image(session: SessionDep, user: CurrentUser, token: str) -> Response:
    return _image(reading.trial_image(session, user, token))


@router.get("/studies/{study_id}/images/{image_id}.png")
def admin_image(session: SessionDep, admin: AdminUser, study_id: int, image_id: int) -> Response:
    return _image(study_results.study_image(session, study_id, image_id))


# --- pages ---------------------------------------------------------------------------------------


def _form_choices(session) -> dict:
    snaps = session.execute(
        select(Snapshot, Job).join(Job, Snapshot.job_id == Job.id).order_by(Snapshot.id.desc())
    ).all()
    return {
        "snapshots": [
            {
                "id": s.id,
                "kimg": s.kimg,
                "job": j.id,
                "dataset_id": j.dataset_id,
                "resolution": j.resolution,
            }
            for s, j in snaps
        ],  # fmt: skip
        "datasets": session.scalars(select(DatasetVersion).order_by(DatasetVersion.id.desc())),
        "reviewers": session.scalars(
            select(User).where(User.role == "reviewer", User.is_active).order_by(User.username)
        ),
    }


def _list_page(request: Request, session, user: User, status: int = 200, **ctx) -> Response:
    ctx = {"studies": svc.list_studies(session, user), "nav": "studies", "form": {}, **ctx}
    if user.is_admin:
        ctx.update(_form_choices(session))
    return render(request, "studies/list.html", ctx, status_code=status)


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
        cls = int(label) if label != "" else None
        req = svc.StudyRequest(snapshot_id, dataset_id, n_real, n_fake, list(readers),
                               truncation, rate_usable, name, holdout, cls)  # fmt: skip
        study = svc.create_study(session, settings, admin, req)
        session.commit()
    except (DomainError, ValueError) as exc:
        session.rollback()
        detail = exc.detail if isinstance(exc, DomainError) else "holdout and label are numbers"
        status = exc.status_code if isinstance(exc, DomainError) else InvalidInput.status_code
        form = {"name": name, "snapshot_id": snapshot_id, "dataset_id": dataset_id,
                "n_real": n_real, "n_fake": n_fake, "truncation": truncation,
                "readers": readers, "rate_usable": rate_usable,
                "holdout_dataset_id": holdout_dataset_id, "label": label}  # fmt: skip
        return _list_page(request, session, admin, status, error=detail, form=form)
    return RedirectResponse(f"/studies#study-{study.id}", status_code=303)


@router.post("/studies/{study_id}/close")
def close_form(session: SessionDep, admin: AdminUser, study_id: int) -> Response:
    svc.close_study(session, study_id, admin)
    session.commit()
    return RedirectResponse("/studies", status_code=303)


def _read_page(request: Request, session, user: User, study_id: int) -> Response:
    nxt = reading.next_trial(session, study_id, user)
    session.commit()
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
    session.commit()
    return _read_page(request, session, user, study_id)


@router.get("/studies/{study_id}/results")
def results_page(
    request: Request, session: SessionDep, user: CurrentUser, study_id: int
) -> Response:
    data = study_results.results(session, study_id, user)
    return render(request, "studies/results.html", {"r": data, "nav": "studies"})
