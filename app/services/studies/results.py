"""Study results: who may see them, the statistics, every trial with its truth, and the CSV.

Admins see everything. A reader sees results only once they have answered every image (or the
study is closed): the pooled statistics, their own per-reader row and their own trials, never
another reader's answers; and not while an overlapping study of theirs is unfinished
(blinding.py, kind "study").
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.errors import Forbidden, NotFound
from app.models import Study, StudyImage, StudyReader, Trial, User
from app.presentation import metric_views
from app.services.evaluation.metric_runs import list_runs
from app.services.studies import blinding
from app.services.studies.manage import get_study, progress, reader_of, study_summary
from app.services.studies.stats import (
    CLASS_NAMES,
    FAST_MS,
    SYNTHETIC_FROM,
    Rating,
    category,
    summarize,
)

CSV_COLUMNS = [
    "study_id", "reader", "position", "image_id", "truth", "label", "source", "held_out",
    "rating", "category", "called_synthetic", "correct", "usable", "comment", "issued_at",
    "answered_at", "server_ms", "client_ms", "fast",
]  # fmt: skip


def snapshot_metrics(session: Session, snapshot_id: int) -> dict | None:
    """The snapshot's FID, KID, precision/recall, PPL, memorisation and C2ST, shown beside the
    readers' results: the newest of each from completed metric runs; None before any."""
    return metric_views.latest(list_runs(session, snapshot_id))


def _answered(session: Session, study: Study, reader: StudyReader | None = None) -> list:
    """(Trial, StudyReader, User, StudyImage) rows of answered trials, in a stable order."""
    q = (
        select(Trial, StudyReader, User, StudyImage)
        .join(StudyReader, Trial.reader_id == StudyReader.id)
        .join(User, StudyReader.user_id == User.id)
        .join(StudyImage, Trial.image_id == StudyImage.id)
        .where(StudyReader.study_id == study.id, Trial.answered_at.is_not(None))
        .order_by(User.username, Trial.position)
    )
    if reader is not None:
        q = q.where(StudyReader.id == reader.id)
    return list(session.execute(q).all())


def source_of(image: StudyImage) -> str:
    if image.synthetic:
        return "synthetic"
    return "real, held out" if image.held_out else "real, training"


def _rating(trial: Trial, user: User, image: StudyImage) -> Rating:
    return Rating(reader=user.username, image_id=image.id, synthetic=image.synthetic,
                  rating=trial.rating, usable=trial.usable, ms=trial.server_ms,
                  label=image.label, source=source_of(image))  # fmt: skip


def can_see_results(session: Session, study: Study, user: User) -> StudyReader | None:
    """None for an admin; the reader's row for a reader who has finished; else 403/404."""
    if user.is_admin:
        return None
    reader = reader_of(session, study, user)
    answered, total = progress(session, reader)
    if answered < total and study.state == "open":
        raise Forbidden("results are shown to a reader only after they have answered every image")
    blinding.check(session, user, "study", study.id)
    return reader


def results(session: Session, study_id: int, user: User) -> dict:
    """Statistics and every visible trial with its truth; image links the viewer may open."""
    study = get_study(session, study_id)
    own = can_see_results(session, study, user)
    rows = _answered(session, study)
    stats = summarize([_rating(t, u, i) for t, _, u, i in rows])
    if own is None:
        visible = rows
        link = {i.id: f"/studies/{study.id}/images/{i.id}.png" for i in study.images}
        out = study_summary(session, study)
    else:  # a reader: their own trials and row, the pooled numbers, their own image tokens
        visible = [r for r in rows if r[1].id == own.id]
        stats["readers"] = {k: v for k, v in stats["readers"].items() if k == user.username}
        tokens = session.execute(
            select(Trial.image_id, Trial.token).where(Trial.reader_id == own.id)
        )
        link = {image_id: f"/study-images/{token}" for image_id, token in tokens}
        out = {"id": study.id, "name": study.name, "state": study.state}
    for key in ("synthetic_called_real", "real_called_synthetic"):
        for row in stats[key]:
            row["image"] = link.get(row["image_id"])
    out["statistics"] = stats
    out["verdict"] = stats["verdict"]
    out["trials"] = [_trial_row(t, u, i, link.get(i.id)) for t, _, u, i in visible]
    out["metrics"] = snapshot_metrics(session, study.snapshot_id)
    return out


def _trial_row(trial: Trial, user: User, image: StudyImage, url: str | None) -> dict:
    called = trial.rating >= SYNTHETIC_FROM
    return {
        "reader": user.username, "position": trial.position, "image_id": image.id,
        "image": url, "truth": "synthetic" if image.synthetic else "real",
        "label": CLASS_NAMES.get(image.label) if image.label is not None else None,
        "source": image.source, "held_out": image.held_out, "rating": trial.rating,
        "category": category(trial.rating),
        "called_synthetic": called, "correct": called == image.synthetic,
        "fast": trial.server_ms is not None and trial.server_ms < FAST_MS,
        "usable": trial.usable, "comment": trial.comment,
        "issued_at": trial.issued_at.isoformat() if trial.issued_at else None,
        "answered_at": trial.answered_at.isoformat(), "server_ms": trial.server_ms,
        "client_ms": trial.client_ms,
    }  # fmt: skip


def _cell(text: str) -> str:
    """Free text that a spreadsheet would run as a formula is prefixed with a quote."""
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def answers_csv(session: Session, study_id: int) -> str:
    """Every answer of a study as CSV, one row per answered trial (admin only, by the route)."""
    study = get_study(session, study_id)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, CSV_COLUMNS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for t, _, u, i in _answered(session, study):
        row = _trial_row(t, u, i, None)
        row["comment"] = _cell(row["comment"])
        writer.writerow({"study_id": study.id, **row})
    return buf.getvalue()


def study_image(session: Session, study_id: int, image_id: int) -> bytes:
    """An image by id, for the admin's results page (the route requires an admin)."""
    image = session.get(StudyImage, image_id)
    if image is None or image.study_id != study_id:
        raise NotFound("no such image")
    return Path(image.path).read_bytes()
