"""The reader's side of a study: the next trial, recording an answer, and the trial's image.

Every path here is the same for real and synthetic images: the class is never read.
Functions that change state commit (the app's one transaction rule).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from app.errors import Conflict, InvalidInput, NotFound
from app.models import Study, StudyReader, Trial, User, utcnow
from app.services.studies import blinding
from app.services.studies.manage import get_study, progress, reader_of

MAX_COMMENT = 2000


@dataclass(frozen=True)
class Next:
    """What a reader is shown: a trial token (or None when done) and their progress."""

    study: Study
    token: str | None
    answered: int
    total: int

    @property
    def image_url(self) -> str | None:
        return f"/study-images/{self.token}" if self.token else None


def _open_reader(session: Session, study_id: int, user: User) -> tuple[Study, StudyReader]:
    study = get_study(session, study_id)
    reader = reader_of(session, study, user)
    if study.state != "open":
        raise Conflict(f"study {study.id} is closed; no more answers are taken")
    return study, reader


def next_trial(session: Session, study_id: int, user: User) -> Next:
    """The reader's first unanswered trial, stamped now so the server can time the answer."""
    study, reader = _open_reader(session, study_id, user)
    trial = session.scalar(
        select(Trial)
        .where(Trial.reader_id == reader.id, Trial.answered_at.is_(None))
        .order_by(Trial.position)
        .limit(1)
    )
    answered, total = progress(session, reader)
    if trial is None:
        return Next(study, None, answered, total)
    trial.issued_at = utcnow()  # a reader who comes back is timed from the new showing
    session.commit()
    return Next(study, trial.token, answered, total)


def answer(
    session: Session,
    study_id: int,
    user: User,
    token: str,
    rating: int,
    usable: bool | None = None,
    comment: str = "",
    client_ms: int | None = None,
) -> Trial:
    """Record one answer, once: a second answer to the same trial is refused, never merged."""
    study = get_study(session, study_id)
    reader = reader_of(session, study, user)
    trial = session.scalar(select(Trial).where(Trial.token == token))
    if trial is None or trial.reader_id != reader.id:
        raise NotFound(f"no trial {token!r} among your trials in study {study.id}")
    if study.state != "open":
        raise Conflict(f"study {study.id} is closed; no more answers are taken")
    if trial.answered_at is not None:
        raise Conflict("this image was already answered; an answer cannot be changed")
    if trial.issued_at is None:
        raise Conflict("this trial has not been shown yet")
    if not isinstance(rating, int) or not 1 <= rating <= 5:
        raise InvalidInput("rating must be 1 (definitely real) to 5 (definitely synthetic)")
    if len(comment) > MAX_COMMENT:
        raise InvalidInput(f"comment is longer than {MAX_COMMENT} characters")
    if client_ms is not None and not 0 <= client_ms < 24 * 3600 * 1000:
        raise InvalidInput("client_ms must be a duration in milliseconds")
    now = utcnow()
    values = {
        "answered_at": now,
        "rating": rating,
        "usable": bool(usable) if study.rate_usable else None,
        "comment": comment.strip(),
        "server_ms": int((now - trial.issued_at).total_seconds() * 1000),
        "client_ms": client_ms,
    }
    done = session.execute(  # guarded so two racing submissions cannot both land
        update(Trial).where(Trial.id == trial.id, Trial.answered_at.is_(None)).values(**values)
    )
    if done.rowcount != 1:
        session.rollback()
        raise Conflict("this image was already answered; an answer cannot be changed")
    session.commit()
    session.refresh(trial)
    return trial


def trial_image(session: Session, user: User, token: str) -> bytes:
    """The frozen PNG behind a token, for the reader who owns it and no one else."""
    trial = session.scalar(select(Trial).where(Trial.token == token))
    if (
        trial is None
        or trial.reader.user_id != user.id
        or trial.reader.removed_at is not None
        or trial.issued_at is None
    ):
        raise NotFound("no such image")
    blinding.check(session, user, "study", trial.reader.study_id)  # a finished study's image
    return Path(trial.image.path).read_bytes()
