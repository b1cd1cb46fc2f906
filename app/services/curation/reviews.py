"""Slice reviews: append-only rows (who, when, decision, label, note); the latest one counts.

Several reviewers may review a volume (assignments); per slice, each reviewer's latest
decision is their vote, shown as agreement and used by "approved by >= k reviewers".
A decision names what its author saw before (`expected`), so a late keystroke cannot land
on a slice it was not meant for, and repeating one's own decision stores nothing."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session, joinedload

from app.errors import Conflict, InvalidInput, NotFound
from app.models import Review, SliceInfo, User, Volume, VolumeAssignment
from app.services.curation import audit, second_reads
from app.services.curation.volumes import check_index

DECISIONS = ("approved", "rejected")
EXPECTED = ("approved", "rejected", "none")  # what the author saw: their own decision or none
LABELS = ("normal", "tumour")
MAX_NOTE = 2000


def default_label(session: Session, volume: Volume, index: int) -> str:
    """'tumour' when the mask marks tumour pixels on the slice, else 'normal'."""
    pixels = session.scalar(
        select(SliceInfo.tumour_pixels).where(
            SliceInfo.volume_id == volume.id, SliceInfo.index == index
        )
    )
    return "tumour" if pixels else "normal"


def add_review(
    session: Session,
    volume: Volume,
    index: int,
    user: User,
    decision: str,
    label: str | None = None,
    note: str = "",
    expected: str | None = None,
) -> Review:
    """Record a decision as a new row (never an update) and commit it.

    `expected` is the author's own decision on the slice as their screen showed it ("none"
    if they had none); a different one stored meanwhile is a 409, nothing is guessed. The
    same decision again (see `_repeats`) returns the author's latest row: no new row."""
    check_index(volume, index)
    if decision not in DECISIONS:
        raise InvalidInput(f"decision must be 'approved' or 'rejected', not {decision!r}")
    if expected is not None and expected not in EXPECTED:
        raise InvalidInput(f"expected must be 'approved', 'rejected' or 'none', not {expected!r}")
    mine = own_latest(session, volume.id, index, user.id)
    label = label or (mine.label if mine is not None else default_label(session, volume, index))
    if label not in LABELS:
        raise InvalidInput(f"label must be 'normal' or 'tumour', not {label!r}")
    note = (note or "").strip()
    if len(note) > MAX_NOTE:
        raise InvalidInput(f"note is too long ({len(note)} characters, at most {MAX_NOTE})")
    if _repeats(session, mine, decision, label, note):
        return mine
    seen = mine.decision if mine is not None else "none"
    if expected is not None and expected != seen:
        raise Conflict(
            f"slice {index + 1}: your screen showed {_said(expected)} there, but your decision "
            f"is now {_said(seen)}; nothing was stored. Look at the slice again and decide."
        )
    independent = second_reads.is_independent(session, volume.id, index, user, mine is not None)
    review = Review(
        volume_id=volume.id,
        slice_index=index,
        user_id=user.id,
        decision=decision,
        label=label,
        note=note,
        independent=independent,
    )
    session.add(review)
    try:
        session.commit()
    except BaseException:
        session.rollback()
        raise
    return review


def _repeats(session: Session, mine: Review | None, decision: str, label: str, note: str) -> bool:
    """A repeated key: the author's own decision again, nobody decided the slice since, and
    no new note. (After another reviewer's row it is a new row: "the latest one counts".)"""
    if (
        mine is None
        or (mine.decision, mine.label) != (decision, label)
        or note not in ("", mine.note)
    ):
        return False
    newest = select(func.max(Review.id)).where(
        Review.volume_id == mine.volume_id, Review.slice_index == mine.slice_index
    )
    return session.scalar(newest) == mine.id


def _said(decision: str) -> str:
    return "no decision" if decision == "none" else f"'{decision}'"


def own_latest(session: Session, volume_id: int, index: int, user_id: int) -> Review | None:
    """The user's own latest decision on one slice."""
    query = select(Review).where(
        Review.volume_id == volume_id, Review.slice_index == index, Review.user_id == user_id
    )
    return session.scalar(query.order_by(Review.id.desc()).limit(1))


def _latest_ids(volume_id: int | None = None):
    q = select(func.max(Review.id)).group_by(Review.volume_id, Review.slice_index)
    return q if volume_id is None else q.where(Review.volume_id == volume_id)


def latest_reviews(session: Session, volume_id: int | None = None) -> dict[tuple[int, int], Review]:
    """The latest review (highest id) per (volume_id, slice_index)."""
    rows = session.scalars(
        select(Review).where(Review.id.in_(_latest_ids(volume_id))).options(joinedload(Review.user))
    )
    return {(r.volume_id, r.slice_index): r for r in rows}


def approved_reviews(session: Session) -> list[Review]:
    """Slices whose latest decision is 'approved', by volume then slice (for dataset freezes)."""
    latest = latest_reviews(session).values()
    approved = [r for r in latest if r.decision == "approved"]
    return sorted(approved, key=lambda r: (r.volume_id, r.slice_index))


def progress(session: Session, volume: Volume) -> dict[str, int]:
    return progress_by_volume(session, [volume])[volume.id]


def progress_by_volume(session: Session, volumes: list[Volume]) -> dict[int, dict[str, int]]:
    """Per volume: approved / rejected / unreviewed slices by latest decision, and the total."""
    latest = select(func.max(Review.id).label("id")).group_by(Review.volume_id, Review.slice_index)
    if len(volumes) == 1:
        latest = latest.where(Review.volume_id == volumes[0].id)
    sub = latest.subquery()
    rows = session.execute(
        select(Review.volume_id, Review.decision, func.count())
        .join(sub, Review.id == sub.c.id)
        .group_by(Review.volume_id, Review.decision)
    )
    counts: dict[tuple[int, str], int] = {(v, d): n for v, d, n in rows}
    out = {}
    for v in volumes:
        approved, rejected = counts.get((v.id, "approved"), 0), counts.get((v.id, "rejected"), 0)
        out[v.id] = {
            "approved": approved,
            "rejected": rejected,
            "unreviewed": v.num_slices - approved - rejected,
            "total": v.num_slices,
        }
    return out


def history(session: Session, volume_id: int, index: int) -> list[Review]:
    """Every decision on one slice, newest first."""
    return list(
        session.scalars(
            select(Review)
            .where(Review.volume_id == volume_id, Review.slice_index == index)
            .options(joinedload(Review.user))
            .order_by(Review.id.desc())
        )
    )


def review_out(review: Review) -> dict:
    return {
        "id": review.id,
        "volume_id": review.volume_id,
        "slice_index": review.slice_index,
        "decision": review.decision,
        "label": review.label,
        "note": review.note,
        "user": review.user.username if review.user else None,
        "created_at": review.created_at.isoformat() + "Z",
    }


def latest_by_reviewer(
    session: Session, volume_id: int | None = None
) -> dict[tuple[int, int], dict[int, Review]]:
    """Each reviewer's latest review per slice: (volume_id, slice_index) -> {user_id: Review}."""
    ids = select(func.max(Review.id)).group_by(Review.volume_id, Review.slice_index, Review.user_id)
    if volume_id is not None:
        ids = ids.where(Review.volume_id == volume_id)
    out: dict[tuple[int, int], dict[int, Review]] = {}
    rows = session.scalars(
        select(Review).where(Review.id.in_(ids)).options(joinedload(Review.user))
    )
    for r in rows:
        out.setdefault((r.volume_id, r.slice_index), {})[r.user_id] = r
    return out


def agreement(votes: dict[int, Review]) -> dict:
    """How the reviewers' latest decisions on one slice agree (for the viewer)."""
    approved = [r for r in votes.values() if r.decision == "approved"]
    labels = {label: sum(r.label == label for r in approved) for label in LABELS}
    return {
        "reviewers": len(votes),
        "approved": len(approved),
        "rejected": len(votes) - len(approved),
        "labels": labels,
        "unanimous": len({(r.decision, r.label) for r in votes.values()}) <= 1,
        "votes": sorted(
            ((r.user.username, r.decision, r.label) for r in votes.values()), key=lambda v: v[0]
        ),
    }


def assignments(session: Session, volume_id: int | None = None) -> dict[int, list[User]]:
    """volume_id -> the reviewers assigned to it."""
    query = select(VolumeAssignment).options(joinedload(VolumeAssignment.user))
    if volume_id is not None:
        query = query.where(VolumeAssignment.volume_id == volume_id)
    out: dict[int, list[User]] = {}
    for a in session.scalars(query.order_by(VolumeAssignment.id)):
        out.setdefault(a.volume_id, []).append(a.user)
    return out


def assign(session: Session, volume: Volume, usernames: list[str], by: User) -> list[User]:
    """Make exactly these users the volume's reviewers (unknown names are a 404)."""
    users = []
    for name in dict.fromkeys(n.strip() for n in usernames if n.strip()):
        found = session.scalar(select(User).where(User.username == name, User.is_active))
        if found is None:
            raise NotFound(f"no active user named {name!r}")
        users.append(found)
    wanted = {u.id for u in users}
    current = {
        a.user_id: a
        for a in session.scalars(
            select(VolumeAssignment).where(VolumeAssignment.volume_id == volume.id)
        )
    }
    for uid, row in current.items():
        if uid not in wanted:
            session.delete(row)
    for uid in wanted - current.keys():
        session.add(VolumeAssignment(volume_id=volume.id, user_id=uid, assigned_by_id=by.id))
    names = sorted(u.username for u in users)
    audit.record(session, "volume.assign", by, f"volume:{volume.id}", reviewers=names)
    session.commit()
    return users


def own_decisions(session: Session, volume_id: int, user_id: int) -> dict[int, Review]:
    """slice index -> the user's own latest decision on this volume."""
    ids = (
        select(func.max(Review.id))
        .where(Review.volume_id == volume_id, Review.user_id == user_id)
        .group_by(Review.slice_index)
    )
    return {r.slice_index: r for r in session.scalars(select(Review).where(Review.id.in_(ids)))}


def progress_seen(session: Session, volume: Volume, view: second_reads.ReadView) -> dict:
    """Progress as this viewer may see it: a blinded reviewer's own decisions only."""
    if view.blinded:
        return own_progress(volume, own_decisions(session, volume.id, view.user_id))
    return progress(session, volume)


def progress_seen_by(session: Session, volumes: list[Volume], user: User) -> dict[int, dict]:
    """progress_by_volume for a list page: on the volumes `user` is assigned to (blinded
    there), their own decisions only."""
    out = progress_by_volume(session, volumes)
    mine = select(VolumeAssignment.volume_id).where(VolumeAssignment.user_id == user.id)
    assigned = set(session.scalars(mine))
    for v in volumes:
        if v.id in assigned:
            out[v.id] = own_progress(v, own_decisions(session, v.id, user.id))
    return out


def own_progress(volume: Volume, mine: dict[int, Review]) -> dict[str, int]:
    """Progress as a blinded reviewer sees it: their own decisions only."""
    approved = sum(r.decision == "approved" for r in mine.values())
    rejected = len(mine) - approved
    return {
        "approved": approved,
        "rejected": rejected,
        "unreviewed": volume.num_slices - approved - rejected,
        "total": volume.num_slices,
    }
