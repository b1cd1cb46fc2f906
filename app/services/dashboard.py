"""The start page's figures: what is there, what is reviewed, and what happened lately."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.models import DatasetVersion, Review, SliceInfo, User, Volume
from app.services.curation.audit import recent_events
from app.services.curation.second_reads import hidden_from


@dataclass(frozen=True)
class Overview:
    volumes: int
    slices: int
    approved: int
    rejected: int
    tumour_approved: int
    datasets: int
    latest_dataset: DatasetVersion | None

    @property
    def unreviewed(self) -> int:
        return max(self.slices - self.approved - self.rejected, 0)

    def percent(self, n: int) -> float:
        return 100.0 * n / self.slices if self.slices else 0.0


@dataclass(frozen=True)
class Activity:
    when: datetime
    who: str
    what: str
    link: str | None = None


def overview(session: Session) -> Overview:
    """Counts for the start page; a slice's state is its latest review (highest id)."""
    latest_ids = (
        select(func.max(Review.id)).group_by(Review.volume_id, Review.slice_index).scalar_subquery()
    )
    states = dict(
        session.execute(
            select(Review.decision, func.count())
            .where(Review.id.in_(latest_ids))
            .group_by(Review.decision)
        ).all()
    )
    tumour = session.scalar(
        select(func.count()).where(
            Review.id.in_(latest_ids), Review.decision == "approved", Review.label == "tumour"
        )
    )
    return Overview(
        volumes=session.scalar(select(func.count()).select_from(Volume)) or 0,
        slices=session.scalar(select(func.count()).select_from(SliceInfo)) or 0,
        approved=states.get("approved", 0),
        rejected=states.get("rejected", 0),
        tumour_approved=tumour or 0,
        datasets=session.scalar(select(func.count()).select_from(DatasetVersion)) or 0,
        latest_dataset=session.scalar(select(DatasetVersion).order_by(DatasetVersion.id.desc())),
    )


_ACTIONS = {
    "login": "logged in",
    "logout": "logged out",
    "login.failed": "failed login",
    "user.create": "created user",
    "user.deactivate": "deactivated user",
    "user.activate": "reactivated user",
    "token.create": "created API token",
    "token.revoke": "revoked API token",
    "password.change": "changed password",
    "dataset.freeze": "froze dataset",
}


def _describe(action: str, target: str, detail: dict) -> tuple[str, str | None]:
    words = _ACTIONS.get(action, action.replace(".", " "))
    name = detail.get("username") or detail.get("name") or ""
    if action == "login.failed":
        name = target.removeprefix("username:")
    link = None
    if target.startswith("dataset:"):
        link = "/datasets/" + target.removeprefix("dataset:")
    elif target.startswith("volume:"):
        link = "/volumes/" + target.removeprefix("volume:")
    return (f"{words} {name}".strip(), link)


def recent_activity(
    session: Session, limit: int = 15, viewer: User | None = None
) -> list[Activity]:
    """Audit events and review decisions, newest first, merged into one list (without the
    decisions `viewer` must not see yet: independent second reads)."""
    items = []
    for event, username in recent_events(session, limit):
        what, link = _describe(event.action, event.target, event.detail or {})
        who = username or ("anonymous" if event.action == "login.failed" else "system")
        items.append(Activity(event.created_at, who, what, link))
    rows = session.execute(
        select(Review, User.username, Volume.name)
        .join(User, User.id == Review.user_id)
        .join(Volume, Volume.id == Review.volume_id)
        .order_by(Review.id.desc())
        .limit(limit)
    )
    rows = rows.all()
    hidden = hidden_from(session, viewer, [r for r, _, _ in rows]) if viewer else set()
    for review, username, volume_name in rows:
        if review.id in hidden:
            continue
        what = f"{review.decision} slice {review.slice_index + 1} of {volume_name} ({review.label})"
        link = f"/volumes/{review.volume_id}?slice={review.slice_index}"
        items.append(Activity(review.created_at, username, what, link))
    items.sort(key=lambda a: a.when, reverse=True)
    return items[:limit]
