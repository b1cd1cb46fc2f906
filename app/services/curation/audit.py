"""The audit trail: one append-only row per security- or data-relevant action."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.models import AuditEvent, User


def record(
    session: Session, action: str, user: User | None = None, target: str = "", **detail: Any
) -> AuditEvent:
    """Add an audit row in the caller's transaction (it commits or rolls back with the change)."""
    event = AuditEvent(
        user_id=user.id if user is not None else None, action=action, target=target, detail=detail
    )
    session.add(event)
    return event


def recent_events(session: Session, limit: int = 20) -> list[tuple[AuditEvent, str | None]]:
    """The newest audit rows with the acting user's name (None for anonymous or system)."""
    rows = session.execute(
        select(AuditEvent, User.username)
        .outerjoin(User, User.id == AuditEvent.user_id)
        .order_by(AuditEvent.id.desc())
        .limit(limit)
    )
    return [(event, username) for event, username in rows]
