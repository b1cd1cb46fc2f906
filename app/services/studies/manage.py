"""Reader studies: list, close, remove a reader, and who may see what (creating one is in
create.py). Functions that change state are their own unit of work: they commit."""

from __future__ import annotations

import shutil

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from app.errors import Conflict, Forbidden, NotFound
from app.models import DatasetVersion, Study, StudyReader, Trial, User, utcnow
from app.services.curation import audit
from app.services.studies import sources
from app.services.studies.create import (  # noqa: F401  (the routes' one import)
    MAX_IMAGES,
    StudyRequest,
    assign,
    create_study,
    readers_of,
    studies_dir,
)
from app.settings import Settings


def get_study(session: Session, study_id: int) -> Study:
    study = session.get(Study, study_id)
    if study is None:
        raise NotFound(f"study {study_id} not found")
    return study


READY = ("open", "closed")  # states a reader may see; before: "preparing" or "failed"


def _transition(session: Session, study_id: int, admin: User, source: str, action: str,
                refusal: str, **values) -> Study:  # fmt: skip
    """One state change by compare-and-set on the state (two admins, two app instances or
    PostgreSQL's concurrent writers: one of them wins, the other gets a 409), audited."""
    study = get_study(session, study_id)
    changed = session.execute(
        update(Study).where(Study.id == study.id, Study.state == source).values(**values)
    )
    if changed.rowcount != 1:
        session.rollback()
        raise Conflict(refusal.format(id=study_id, state=study.state))
    audit.record(session, action, admin, f"study:{study.id}")
    session.commit()
    session.refresh(study)
    return study


def retry_study(session: Session, study_id: int, admin: User) -> Study:
    """Make a failed study's images again (one retry at a time)."""
    return _transition(session, study_id, admin, "failed", "study.retry",
                       "study {id} is {state}; only a failed study is retried",
                       state="preparing", prepared=0, prepare_error=None)  # fmt: skip


def delete_study(session: Session, settings: Settings, study_id: int, admin: User) -> None:
    """Delete a study that never opened (preparing or failed); an open one holds answers."""
    study = get_study(session, study_id)
    if study.state in READY:
        raise Conflict(f"study {study_id} is {study.state}; only a study not yet ready is deleted")
    session.delete(study)
    audit.record(session, "study.delete", admin, f"study:{study_id}")
    session.commit()
    shutil.rmtree(studies_dir(settings, study_id), ignore_errors=True)


def close_study(session: Session, study_id: int, admin: User) -> Study:
    """Close once: two admins closing at once record one close and get one 409."""
    refusal = "study {id} is already closed"
    return _transition(session, study_id, admin, "open", "study.close", refusal,
                       state="closed", closed_at=utcnow())  # fmt: skip


def remove_reader(session: Session, study_id: int, username: str, admin: User) -> StudyReader:
    """Stop a reader mid-study: their answers stay and count, they cannot answer any more."""
    study = get_study(session, study_id)
    for reader in study.readers:
        if reader.user.username == username:
            if reader.removed_at is not None:
                raise Conflict(f"{username} was already removed from study {study_id}")
            reader.removed_at = utcnow()
            audit.record(
                session, "study.remove_reader", admin, f"study:{study.id}", reader=username
            )
            session.commit()
            return reader
    raise NotFound(f"{username} is not a reader of study {study_id}")


def reader_of(session: Session, study: Study, user: User) -> StudyReader:
    """The user's place in the study; a study they are not in does not exist for them."""
    reader = session.scalar(
        select(StudyReader).where(StudyReader.study_id == study.id, StudyReader.user_id == user.id)
    )
    if reader is None or study.state not in READY:
        raise NotFound(f"study {study.id} not found")
    if reader.removed_at is not None:
        raise Forbidden(f"you were removed from study {study.id}; your answers are kept")
    return reader


def progress(session: Session, reader: StudyReader) -> tuple[int, int]:
    """(answered, total) for one reader."""
    answered, total = session.execute(
        select(func.count(Trial.answered_at), func.count(Trial.id)).where(
            Trial.reader_id == reader.id
        )
    ).one()
    return int(answered), int(total)


def list_studies(session: Session, user: User) -> list[dict]:
    """Admins see every study; a reviewer sees the ones they read, with only their progress."""
    if user.is_admin:
        return [
            study_summary(session, s) for s in session.scalars(select(Study).order_by(Study.id))
        ]
    readers = session.scalars(
        select(StudyReader)
        .join(Study)
        .where(StudyReader.user_id == user.id, StudyReader.removed_at.is_(None))
        .where(Study.state.in_(READY))
        .order_by(StudyReader.study_id)
    )
    return [reader_summary(session, r) for r in readers]


def reader_summary(session: Session, reader: StudyReader) -> dict:
    """A reviewer's view of a study they read: its name, state and their own progress only."""
    answered, total = progress(session, reader)
    s = reader.study
    return {"id": s.id, "name": s.name, "state": s.state, "answered": answered, "total": total,
            "finished": answered == total}  # fmt: skip


def study_summary(session: Session, study: Study) -> dict:
    """The admin's view of a study (includes the design; never the per-image key)."""
    readers = []
    seen = reviewed_reals(session, study)
    for r in study.readers:
        answered, total = progress(session, r)
        removed, active = r.removed_at is not None, r.user.is_active
        readers.append({"username": r.user.username, "answered": answered, "total": total,
                        "removed": removed, "active": active,
                        "reviewed_real_images": seen.get(r.user.username, 0)})  # fmt: skip
    return {
        "id": study.id, "name": study.name, "state": study.state,
        "snapshot_id": study.snapshot_id, "dataset_id": study.dataset_id,
        "real_dataset_id": study.real_dataset_id, "reals_held_out": study.reals_held_out,
        "resolution": study.resolution, "n_real": study.n_real, "n_fake": study.n_fake,
        "truncation": study.truncation, "label": study.label, "class_mix": study.class_mix,
        "rate_usable": study.rate_usable, "prepared": study.prepared,
        "prepare_error": study.prepare_error, "created_at": study.created_at.isoformat(),
        "readers": readers,
    }  # fmt: skip


def reviewed_reals(session: Session, study: Study) -> dict[str, int]:
    """Per reader, how many of the study's real images they reviewed during curation."""
    real = study.real_dataset_id and session.get(DatasetVersion, study.real_dataset_id)
    if not real:
        return {}
    names = [i.source for i in study.images if not i.synthetic]
    return sources.reviewed_by(session, real, [r.user for r in study.readers], names)
