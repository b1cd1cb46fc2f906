"""The blinding rule: while a user has an unfinished study, nothing that shows that study's
source images is reachable by them.

"Source images" are the study's training and real (held-out) dataset versions, every other
version that shares a source volume with them, those volumes' slices, and every job and
snapshot trained on any of those versions, plus the study generator's whole lineage: the
snapshots it was fine-tuned from and every snapshot fine-tuned from any hidden one, at any depth
(`lineage`; an imported checkpoint records no parent, so it is judged by its dataset and passes
its state on through `resume_from` like any other). Their sample grids and generated images look
like the study's synthetic ones. Generated images are addressed by an opaque token, not a
snapshot, so they are hidden from such a user altogether.

The truth of another study (kind "study": its results, labelled trial images) is hidden too when
that study overlaps an unfinished one: it used a hidden dataset version (shared source volumes,
either direction) or a generator of the same lineage. A finished study's answers would otherwise
tell the reader which of the next study's images are real.

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

KINDS = ("dataset", "volume", "job", "snapshot", "metric_run", "generated", "study")
PARAMS = {"dataset": "dataset_id", "volume": "volume_id", "job": "job_id",
          "snapshot": "snapshot_id", "metric_run": "run_id", "study": "study_id"}  # fmt: skip
WHAT = {
    "dataset": "this dataset version holds images from the study's source volumes",
    "volume": "this volume is a source of the study's real or training images",
    "job": "this training job learnt from the study's source images",
    "snapshot": "this snapshot's generator was trained on the study's source images",
    "metric_run": "these metric results show the study's training images",
    "generated": "generated images may come from the study's generator",
    "study": "this study's answers show real images or a generator that your study also uses",
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
    """Studies in which `user` is a current reader with images left: (study, done, total).

    A study still preparing its images counts from the moment it names the reader (no trials
    yet: 0 of 0), so nothing seen while it prepares can be matched against it later."""
    rows = session.execute(
        select(Study, func.count(Trial.answered_at), func.count(Trial.id))
        .join(StudyReader, StudyReader.study_id == Study.id)
        .outerjoin(Trial, Trial.reader_id == StudyReader.id)
        .where(
            StudyReader.user_id == user.id, StudyReader.removed_at.is_(None),
            Study.state.in_(("open", "preparing")),
        )  # fmt: skip
        .group_by(Study.id)
        .order_by(Study.id)
    ).all()
    return [
        (s, int(done), int(total)) for s, done, total in rows
        if s.state == "preparing" or done < total
    ]  # fmt: skip


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
    trained = set(session.scalars(select(Job.id).where(Job.dataset_id.in_(hidden.datasets))))
    hidden.jobs = lineage(session, trained, [s.snapshot_id for s, _, _ in hidden.studies])
    snaps = select(Snapshot.id).where(Snapshot.job_id.in_(hidden.jobs))
    hidden.snapshots = set(session.scalars(snaps))
    return hidden


def lineage(session: Session, job_ids: set[int], snapshot_ids: list[int]) -> set[int]:
    """The jobs of `job_ids` and of `snapshot_ids`, the jobs those snapshots were fine-tuned
    from (up the `resume_from` chain), and every job fine-tuned from any of them, any depth
    (so siblings too): a fine-tuned copy generates nearly the same image at the same seed."""
    up: set[int] = set()
    parents = set(snapshot_ids)
    while parents:  # up: each snapshot's job, then the snapshot that job resumed from
        rows = session.execute(
            select(Job.id, Job.resume_from_snapshot_id)
            .join(Snapshot, Snapshot.job_id == Job.id)
            .where(Snapshot.id.in_(parents))
        ).all()
        new = {j for j, _ in rows} - up
        up |= new
        parents = {p for j, p in rows if p is not None and j in new}
    jobs = set(job_ids) | up
    frontier = set(jobs)
    while frontier:  # down: jobs resumed from a snapshot of a job already hidden
        children = select(Job.id).join(Snapshot, Job.resume_from_snapshot_id == Snapshot.id)
        found = set(session.scalars(children.where(Snapshot.job_id.in_(frontier))))
        frontier = found - jobs
        jobs |= frontier
    return jobs


def overlaps(hidden: Hidden, study: Study) -> bool:
    """Whether `study` shares real or training images, or a generator's lineage, with one of
    the user's unfinished studies (and is not itself one of them)."""
    if any(s.id == study.id for s, _, _ in hidden.studies):
        return False
    used = {study.dataset_id, study.real_dataset_id}
    return bool(used & hidden.datasets) or study.snapshot_id in hidden.snapshots


def _is_hidden(session: Session, hidden: Hidden, kind: str, ident: int | None) -> bool:
    if kind == "generated":
        return True
    if kind == "metric_run":
        run = session.get(MetricRun, ident)
        return run is not None and run.snapshot_id in hidden.snapshots
    if kind == "study":
        study = session.get(Study, ident)
        return study is not None and overlaps(hidden, study)
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
