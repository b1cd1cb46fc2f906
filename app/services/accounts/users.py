"""Accounts and API tokens; every change leaves an audit row and is its own unit of work."""

from __future__ import annotations

import re
from functools import lru_cache

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.errors import Conflict, Forbidden, InvalidInput, NotFound
from app.models import ApiToken, User
from app.security import hash_password, new_api_token, token_digest, verify_password
from app.services.accounts import passwords, sessions, throttle
from app.services.curation import audit
from app.settings import Settings

ROLES = ("admin", "reviewer")
MIN_PASSWORD = passwords.MIN_PASSWORD
_NAME = re.compile(r"^[A-Za-z0-9_.-]{2,64}$")


def create_user(
    session: Session, username: str, role: str, password: str, actor: User | None = None
) -> User:
    if not _NAME.match(username):
        raise InvalidInput("username must be 2-64 letters, digits, '.', '_' or '-'")
    if role not in ROLES:
        raise InvalidInput(f"role must be one of {', '.join(ROLES)}")
    passwords.check(password, username)
    user = User(username=username, role=role, password_hash=hash_password(password))
    session.add(user)
    try:
        session.flush()
    except IntegrityError as exc:
        session.rollback()
        raise Conflict(f"user {username!r} already exists") from exc
    audit.record(session, "user.create", actor, f"user:{user.id}", username=username, role=role)
    session.commit()
    return user


def get_user(session: Session, username: str) -> User:
    user = session.scalar(select(User).where(User.username == username))
    if user is None:
        raise NotFound(f"no user named {username!r}")
    return user


def list_users(session: Session) -> list[User]:
    return list(session.scalars(select(User).order_by(User.username)))


@lru_cache(maxsize=1)
def dummy_hash() -> str:
    """Verified against for unknown names, so timing does not reveal which names exist."""
    return hash_password("not-a-real-password")


def reauthenticate(session: Session, settings: Settings, user: User, password: str) -> None:
    """The password again before a sensitive change (a new token, a new password). Throttled
    like a login, so a stolen session cannot guess the password here either."""
    keys = throttle.keys(user.username, "")
    throttle.check(session, keys)
    if not password:
        raise Forbidden("enter your current password to do this")
    if not verify_password(user.password_hash, password):
        throttle.record_failure(session, settings, keys)
        audit.record(session, "reauth.failed", user, f"user:{user.id}")
        session.commit()
        raise Forbidden("the current password is wrong")


def set_active(session: Session, actor: User, user_id: int, active: bool) -> User:
    """Deactivate (or reactivate) an account; a deactivation ends its sessions at once. Rows
    stay so the audit trail keeps its names."""
    user = session.get(User, user_id)
    if user is None:
        raise NotFound(f"no user with id {user_id}")
    if user.id == actor.id and not active:
        raise Conflict("you cannot deactivate your own account")
    if user.is_active != active:
        user.is_active = active
        action = "user.activate" if active else "user.deactivate"
        audit.record(session, action, actor, f"user:{user.id}", username=user.username)
    if not active:
        sessions.end_for_user(session, user.id, "deactivated", commit=False)
    session.commit()
    return user


def end_sessions(session: Session, actor: User, user_id: int) -> int:
    """An admin ends every session of a user (e.g. a lost laptop); how many ended."""
    user = session.get(User, user_id)
    if user is None:
        raise NotFound(f"no user with id {user_id}")
    n = sessions.end_for_user(session, user.id, "admin", commit=False)
    audit.record(session, "sessions.end", actor, f"user:{user.id}", ended=n)
    session.commit()
    return n


def change_password(
    session: Session,
    settings: Settings,
    user: User,
    current: str,
    new: str,
    keep_login_id: int | None = None,
    revoke_tokens: bool = True,
) -> int:
    """Set a new password; every other session ends and, unless told otherwise, every API
    token is revoked (a thief's token must not outlive the change). Returns tokens revoked."""
    try:
        reauthenticate(session, settings, user, current)
    except Forbidden as exc:
        raise InvalidInput(exc.detail) from exc
    passwords.check(new, user.username)
    user.password_hash = hash_password(new)
    sessions.end_for_user(session, user.id, "password", keep_id=keep_login_id, commit=False)
    revoked = 0
    if revoke_tokens:
        result = session.execute(delete(ApiToken).where(ApiToken.user_id == user.id))
        revoked = result.rowcount or 0
    audit.record(session, "password.change", user, f"user:{user.id}", tokens_revoked=revoked)
    session.commit()
    return revoked


def issue_token(session: Session, user: User, name: str = "") -> tuple[ApiToken, str]:
    """A new API token row and its plain text, shown once; only the hash is kept. The HTTP
    routes ask for the password first (`reauthenticate`); the CLI runs as the server's owner."""
    name = name.strip()[:100]
    token = new_api_token()
    row = ApiToken(user_id=user.id, token_hash=token_digest(token), name=name)
    session.add(row)
    session.flush()
    audit.record(session, "token.create", user, f"token:{row.id}", name=name)
    session.commit()
    return row, token


def create_token(session: Session, user: User, name: str = "") -> str:
    """The plain text of a new API token (CLI and test fixtures)."""
    return issue_token(session, user, name)[1]


def list_tokens(session: Session, user: User) -> list[ApiToken]:
    return list(
        session.scalars(select(ApiToken).where(ApiToken.user_id == user.id).order_by(ApiToken.id))
    )


def revoke_token(session: Session, user: User, token_id: int) -> None:
    """Delete one of the user's own tokens; the audit row remembers that it existed."""
    row = session.get(ApiToken, token_id)
    if row is None or row.user_id != user.id:
        raise NotFound(f"you have no API token with id {token_id}")
    audit.record(session, "token.revoke", user, f"token:{row.id}", name=row.name)
    session.delete(row)
    session.commit()
