"""The blinding rule: while a user has an unfinished study, nothing that shows that study's
source images is reachable by them.

"Source images" are the study's training and real (held-out) dataset versions, every other
version that shares a source volume with them, those volumes' slices, and every job and
snapshot trained on any of those versions (their sample grids and generated images look like
the study's synthetic ones). Generated images are addressed by an opaque token, not a
snapshot, so they are hidden from such a user altogether.

One rule (`blocked_reason`, enforced by `check`); routers hang it on their image routes with
`dependencies=[blind("dataset")]` (the FastAPI guard in app/deps.py): it answers 403 with a
sentence saying why, which the one error handler shows as a page or as JSON `{"detail": ...}`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.errors import Forbidden
from app.models import DatasetItem, Job, MetricRun, Snapshot, Study, StudyReader, Trial, User

KINDS = ("dataset", "volume", "job", "snapshot", "metric_run", "generated")
PARAMS = {"dataset": "dataset_id", "volume": "volume_id", "job": "job_id",
          "snapshot": "snapshot_id", "metric_run": "run_id"}  # fmt: skip
WHAT = {
    "dataset": "this dataset version holds images from the study's source volumes",
    "volume": "this volume is a source of the study's real or training images",
    "job": "this training job learnt from the study's source images",
    "snapshot": "this snapshot's generator was trained on the study's source images",
    "metric_run": "these metric results show the study's training images",
    "generated": "generated images may come from the study's generator",
}


@dataclass
class Hidden:
    """What one user may not see, and the unfinished studies that hide it."""

    studies: list[tuple[Study, int, int]] = field(default_factory=list)  # (study, done, total)
    datasets: set[int] = field(default_factory=set)
    volumes: set[int] = field(default_factory=set)
    jobs: set[int] = field(default_factory=set)
    snapshots: set[int] = field(default_factory=set)

    def __bool__(self) -> bool:
        return bool(self.studies)


def unfinished(session: Session, user: User) -> list[tuple[Study, int, int]]:
    """Open studies in which `user` is a current reader with images left: (study, done, total)."""
    rows = session.execute(
        select(Study, func.count(Trial.answered_at), func.count(Trial.id))
        .join(StudyReader, StudyReader.study_id == Study.id)
        .join(Trial, Trial.reader_id == StudyReader.id)
        .where(
            StudyReader.user_id == user.id, StudyReader.removed_at.is_(None), Study.state == "open"
        )  # fmt: skip
        .group_by(Study.id)
        .order_by(Study.id)
    ).all()
    return [(s, int(done), int(total)) for s, done, total in rows if done < total]


def hidden_for(session: Session, user: User) -> Hidden:
    """Everything the user's unfinished studies hide from them (empty when there are none)."""
    hidden = Hidden(studies=unfinished(session, user))
    if not hidden:
        return hidden
    sources = {s.dataset_id for s, _, _ in hidden.studies}
    sources |= {s.real_dataset_id for s, _, _ in hidden.studies}
    hidden.volumes = set(
        session.scalars(select(DatasetItem.volume_id).where(DatasetItem.dataset_id.in_(sources)))
    )
    sharing = select(DatasetItem.dataset_id).where(DatasetItem.volume_id.in_(hidden.volumes))
    hidden.datasets = sources | set(session.scalars(sharing))
    study_jobs = select(Snapshot.job_id).where(
        Snapshot.id.in_([s.snapshot_id for s, _, _ in hidden.studies])
    )
    hidden.jobs = set(session.scalars(select(Job.id).where(Job.dataset_id.in_(hidden.datasets))))
    hidden.jobs |= set(session.scalars(study_jobs))
    snaps = select(Snapshot.id).where(Snapshot.job_id.in_(hidden.jobs))
    hidden.snapshots = set(session.scalars(snaps))
    return hidden


def _is_hidden(session: Session, hidden: Hidden, kind: str, ident: int | None) -> bool:
    if kind == "generated":
        return True
    if kind == "metric_run":
        run = session.get(MetricRun, ident)
        return run is not None and run.snapshot_id in hidden.snapshots
    pool = {"dataset": hidden.datasets, "volume": hidden.volumes, "job": hidden.jobs,
            "snapshot": hidden.snapshots}[kind]  # fmt: skip
    return ident in pool


def reason(hidden: Hidden, kind: str) -> str:
    """The sentence a blocked user reads: which study, why, and how to get access back."""
    study, done, total = hidden.studies[0]
    more = f" (and {len(hidden.studies) - 1} more)" if len(hidden.studies) > 1 else ""
    return (
        f"Hidden while you read study “{study.name}”{more}: {WHAT[kind]}, and seeing it "
        f"would unblind you. You have answered {done} of {total} images; once you have "
        "answered all of them (or the study is closed) this is shown again."
    )


def blocked_reason(session: Session, user: User, kind: str, ident: int | None) -> str | None:
    """Why `user` may not see object `ident` of `kind` now, or None when they may."""
    if kind not in KINDS:
        raise ValueError(f"unknown kind {kind!r}")
    hidden = hidden_for(session, user)
    if not hidden or not _is_hidden(session, hidden, kind, ident):
        return None
    return reason(hidden, kind)


def check(session: Session, user: User, kind: str, ident: int | None = None) -> None:
    """Raise Forbidden (403) with the reason when the blinding hides this object from `user`."""
    why = blocked_reason(session, user, kind, ident)
    if why is not None:
        raise Forbidden(why)
