"""Independent second reads: an assigned reviewer sees no other reviewer's decision, name or
history on a slice until they have decided that slice themselves.

An admin may reveal the others' decisions on a volume (`reveal`); that is recorded once in
the audit trail, and the admin's later reads of that volume no longer count as independent.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.errors import Forbidden
from app.models import AuditEvent, Review, User, Volume, VolumeAssignment
from app.services.curation import audit

REVEAL = "reviews.reveal"


@dataclass(frozen=True)
class ReadView:
    """What one user may see of a volume's reviews: with `blinded`, only the slices in
    `decided` (those they decided themselves) show the other reviewers."""

    user_id: int
    blinded: bool
    decided: frozenset[int] = field(default_factory=frozenset)

    def shows_others(self, index: int) -> bool:
        return not self.blinded or index in self.decided

    def within(self) -> set[int] | None:
        """The slices a volume-wide figure (kappa) may rest on: for a blinded reviewer, their
        own reads; None for all."""
        return set(self.decided) if self.blinded else None


def is_assigned(session: Session, volume_id: int, user_id: int) -> bool:
    query = select(VolumeAssignment.id).where(
        VolumeAssignment.volume_id == volume_id, VolumeAssignment.user_id == user_id
    )
    return session.scalar(query) is not None


def has_revealed(session: Session, volume_id: int, user_id: int) -> bool:
    query = select(AuditEvent.id).where(
        AuditEvent.action == REVEAL,
        AuditEvent.user_id == user_id,
        AuditEvent.target == f"volume:{volume_id}",
    )
    return session.scalar(query.limit(1)) is not None


def decided_slices(session: Session, volume_id: int, user_id: int) -> frozenset[int]:
    query = select(Review.slice_index).where(
        Review.volume_id == volume_id, Review.user_id == user_id
    )
    return frozenset(session.scalars(query.distinct()))


def read_view(session: Session, volume: Volume, user: User, reveal: bool = False) -> ReadView:
    """The user's view of the volume's reviews; `reveal` is for admins only (403 otherwise)."""
    if reveal and not user.is_admin:
        raise Forbidden("only an admin may show the other reviewers' decisions")
    assigned = is_assigned(session, volume.id, user.id)
    if reveal and assigned and not has_revealed(session, volume.id, user.id):
        audit.record(session, REVEAL, user, f"volume:{volume.id}")
        session.commit()
    if not assigned or reveal:
        return ReadView(user.id, blinded=False)
    return ReadView(user.id, True, decided_slices(session, volume.id, user.id))


def is_independent(session: Session, volume_id: int, index: int, user: User, had_own: bool) -> bool:
    """Whether a decision about to be stored was made without sight of another reviewer's
    decision: nobody else had decided the slice, or the author is an assigned reviewer who
    is still blinded on it (no earlier decision of their own, no reveal)."""
    others = select(Review.id).where(
        Review.volume_id == volume_id, Review.slice_index == index, Review.user_id != user.id
    )
    if session.scalar(others.limit(1)) is None:
        return True
    return (
        not had_own
        and is_assigned(session, volume_id, user.id)
        and not has_revealed(session, volume_id, user.id)
    )


def hidden_from(session: Session, user: User, reviews: list[Review]) -> set[int]:
    """Ids of these reviews that `user` may not see yet: another reviewer's decision on a
    slice of a volume `user` is assigned to (and has not revealed) that they have not decided."""
    views: dict[int, ReadView] = {}
    hidden = set()
    for r in reviews:
        if r.user_id == user.id:
            continue
        if r.volume_id not in views:
            revealed = user.is_admin and has_revealed(session, r.volume_id, user.id)
            blinded = is_assigned(session, r.volume_id, user.id) and not revealed
            decided = decided_slices(session, r.volume_id, user.id) if blinded else frozenset()
            views[r.volume_id] = ReadView(user.id, blinded, decided)
        if not views[r.volume_id].shows_others(r.slice_index):
            hidden.add(r.id)
    return hidden
