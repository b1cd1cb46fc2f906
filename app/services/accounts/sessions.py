"""Server-side login sessions: the cookie holds a random id, the row decides whether it works.

Ending a row ends the session at once, wherever its cookie was copied to: logout, a password
change (all but the session that made it), deactivation and an admin's "end all sessions".
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from app.errors import NotFound
from app.models import LoginSession, User, utcnow
from app.security import new_csrf_token, new_session_id, token_digest
from app.settings import Settings

TOUCH_EVERY = timedelta(minutes=1)  # last_seen_at is coarse, so browsing does not write often
ENDED_WHY = {
    "logout": "you logged out",
    "password": "the password was changed",
    "deactivated": "the account was deactivated",
    "admin": "an admin ended it",
    "user": "it was ended from the account page",
    "idle": "it was idle too long",
    "expired": "it reached its maximum age",
}


@dataclass(frozen=True)
class Resolved:
    """The outcome of a cookie: the live session, or why there is none."""

    login: LoginSession | None
    why: str = ""


def start(session: Session, user: User, client: str = "", agent: str = "") -> tuple[str, str]:
    """A new session row for a login; returns (cookie value, CSRF token). Commits."""
    sid = new_session_id()
    row = LoginSession(
        sid_hash=token_digest(sid),
        user_id=user.id,
        csrf=new_csrf_token(),
        client=client[:64],
        user_agent=agent[:200],
    )
    session.add(row)
    session.commit()
    return sid, row.csrf


def seen_device(session: Session, settings: Settings, user: User, client: str, agent: str) -> bool:
    """Whether this address and browser logged into `user` within the session lifetime: the
    login throttle lets such a device's right password through a stranger's back-off."""
    since = utcnow() - timedelta(seconds=settings.session_max_age_s)
    found = session.scalar(
        select(LoginSession.id)
        .where(
            LoginSession.user_id == user.id,
            LoginSession.client == client[:64],
            LoginSession.user_agent == agent[:200],
            LoginSession.created_at >= since,
        )
        .limit(1)
    )
    return found is not None


def _end_rows(session: Session, where, reason: str) -> int:  # noqa: ANN001
    result = session.execute(
        update(LoginSession)
        .where(LoginSession.ended_at.is_(None), *where)
        .values(ended_at=utcnow(), end_reason=reason)
    )
    return result.rowcount or 0


def resolve(session: Session, settings: Settings, sid: str | None) -> Resolved:
    """The live session for a cookie value; ends it when idle or too old (then commits)."""
    if not sid:
        return Resolved(None, "login required")
    row = session.scalar(select(LoginSession).where(LoginSession.sid_hash == token_digest(sid)))
    if row is None:
        return Resolved(None, "login required")
    if row.ended_at is None:
        now = utcnow()
        reason = _lifetime_over(settings, row, now)
        if reason is None and not row.user.is_active:
            reason = "deactivated"
        if reason is not None:
            row.ended_at, row.end_reason = now, reason
            session.commit()
        elif now - row.last_seen_at > min(
            TOUCH_EVERY, timedelta(seconds=settings.session_idle_s / 4)
        ):
            row.last_seen_at = now
            session.commit()
    if row.ended_at is not None:
        why = ENDED_WHY.get(row.end_reason or "", "it was ended")
        return Resolved(None, f"your session has ended ({why}); log in again")
    return Resolved(row)


def _lifetime_over(settings: Settings, row: LoginSession, now: datetime) -> str | None:
    if now - row.created_at > timedelta(seconds=settings.session_max_age_s):
        return "expired"
    if now - row.last_seen_at > timedelta(seconds=settings.session_idle_s):
        return "idle"
    return None


def end(session: Session, login_id: int, reason: str = "logout") -> None:
    """End one session (logout). Commits."""
    _end_rows(session, [LoginSession.id == login_id], reason)
    session.commit()


def end_own(session: Session, user: User, login_id: int) -> None:
    """A user ends one of their own sessions from the account page. Commits."""
    row = session.get(LoginSession, login_id)
    if row is None or row.user_id != user.id or row.ended_at is not None:
        raise NotFound(f"you have no active session with id {login_id}")
    end(session, login_id, "user")


def end_for_user(
    session: Session, user_id: int, reason: str, keep_id: int | None = None, commit: bool = True
) -> int:
    """End every session of a user (but `keep_id`); how many ended. Commits unless told not to
    (when it is part of a larger change such as a password change)."""
    where = [LoginSession.user_id == user_id]
    if keep_id is not None:
        where.append(LoginSession.id != keep_id)
    n = _end_rows(session, where, reason)
    if commit:
        session.commit()
    return n


def active_for(session: Session, settings: Settings, user: User) -> list[LoginSession]:
    """The user's sessions that still work, newest first (for the account page)."""
    now = utcnow()
    rows = session.scalars(
        select(LoginSession)
        .where(LoginSession.user_id == user.id, LoginSession.ended_at.is_(None))
        .order_by(LoginSession.last_seen_at.desc())
    )
    return [r for r in rows if _lifetime_over(settings, r, now) is None]


def active_counts(session: Session) -> dict[int, int]:
    """Open sessions per user id (for the admin's user list)."""
    rows = session.execute(
        select(LoginSession.user_id, func.count())
        .where(LoginSession.ended_at.is_(None))
        .group_by(LoginSession.user_id)
    )
    return {uid: n for uid, n in rows}


def purge(session: Session, settings: Settings) -> int:
    """Delete rows that ended or expired long ago (start-up housekeeping). Commits."""
    cutoff = utcnow() - timedelta(seconds=settings.session_max_age_s)
    result = session.execute(
        delete(LoginSession).where(
            (LoginSession.created_at < cutoff)
            | (LoginSession.ended_at.is_not(None) & (LoginSession.ended_at < cutoff))
        )
    )
    session.commit()
    return result.rowcount or 0
