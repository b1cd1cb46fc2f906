"""Accounts, logins and API tokens; every change leaves an audit row."""

from __future__ import annotations

import re
from functools import lru_cache

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.errors import Conflict, InvalidInput, NotFound
from app.models import ApiToken, User
from app.security import hash_password, new_api_token, token_digest, verify_password
from app.services.curation import audit

ROLES = ("admin", "reviewer")
MIN_PASSWORD = 8
_NAME = re.compile(r"^[A-Za-z0-9_.-]{2,64}$")


def _check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD:
        raise InvalidInput(f"password must have at least {MIN_PASSWORD} characters")


def create_user(
    session: Session, username: str, role: str, password: str, actor: User | None = None
) -> User:
    if not _NAME.match(username):
        raise InvalidInput("username must be 2-64 letters, digits, '.', '_' or '-'")
    if role not in ROLES:
        raise InvalidInput(f"role must be one of {', '.join(ROLES)}")
    _check_password(password)
    user = User(username=username, role=role, password_hash=hash_password(password))
    session.add(user)
    try:
        session.flush()
    except IntegrityError as exc:
        session.rollback()
        raise Conflict(f"user {username!r} already exists") from exc
    audit.record(session, "user.create", actor, f"user:{user.id}", username=username, role=role)
    return user


def get_user(session: Session, username: str) -> User:
    user = session.scalar(select(User).where(User.username == username))
    if user is None:
        raise NotFound(f"no user named {username!r}")
    return user


def list_users(session: Session) -> list[User]:
    return list(session.scalars(select(User).order_by(User.username)))


@lru_cache(maxsize=1)
def _dummy_hash() -> str:
    return hash_password("not-a-real-password")


def authenticate(session: Session, username: str, password: str) -> User | None:
    user = session.scalar(select(User).where(User.username == username))
    if user is None:
        verify_password(_dummy_hash(), password)  # same cost, so timing does not reveal names
        return None
    if not verify_password(user.password_hash, password) or not user.is_active:
        return None
    return user


def log_in(session: Session, username: str, password: str, client: str = "") -> User | None:
    """Check a password login and audit the attempt, successful or not."""
    user = authenticate(session, username, password)
    if user is None:
        audit.record(session, "login.failed", None, f"username:{username[:64]}", client=client)
    else:
        audit.record(session, "login", user, f"user:{user.id}", client=client)
    return user


def log_out(session: Session, user: User) -> None:
    audit.record(session, "logout", user, f"user:{user.id}")


def set_active(session: Session, actor: User, user_id: int, active: bool) -> User:
    """Deactivate (or reactivate) an account; rows stay so the audit trail keeps its names."""
    user = session.get(User, user_id)
    if user is None:
        raise NotFound(f"no user with id {user_id}")
    if user.id == actor.id and not active:
        raise Conflict("you cannot deactivate your own account")
    if user.is_active != active:
        user.is_active = active
        action = "user.activate" if active else "user.deactivate"
        audit.record(session, action, actor, f"user:{user.id}", username=user.username)
    session.flush()
    return user


def change_password(session: Session, user: User, current: str, new: str) -> None:
    if not verify_password(user.password_hash, current):
        raise InvalidInput("the current password is wrong")
    _check_password(new)
    user.password_hash = hash_password(new)
    audit.record(session, "password.change", user, f"user:{user.id}")
    session.flush()


def create_token(session: Session, user: User, name: str = "") -> str:
    """A new API token; the plain text is returned once and only its hash is kept."""
    name = name.strip()[:100]
    token = new_api_token()
    row = ApiToken(user_id=user.id, token_hash=token_digest(token), name=name)
    session.add(row)
    session.flush()
    audit.record(session, "token.create", user, f"token:{row.id}", name=name)
    return token


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
    session.flush()
