"""Accounts and API tokens."""

from __future__ import annotations

import re

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.errors import Conflict, InvalidInput, NotFound
from app.models import ApiToken, AuditEvent, User
from app.security import hash_password, new_api_token, token_digest, verify_password

ROLES = ("admin", "reviewer")
_NAME = re.compile(r"^[A-Za-z0-9_.-]{2,64}$")


def create_user(session: Session, username: str, role: str, password: str) -> User:
    if not _NAME.match(username):
        raise InvalidInput("username must be 2-64 letters, digits, '.', '_' or '-'")
    if role not in ROLES:
        raise InvalidInput(f"role must be one of {', '.join(ROLES)}")
    if len(password) < 8:
        raise InvalidInput("password must have at least 8 characters")
    user = User(username=username, role=role, password_hash=hash_password(password))
    session.add(user)
    try:
        session.flush()
    except IntegrityError as exc:
        session.rollback()
        raise Conflict(f"user {username!r} already exists") from exc
    session.add(
        AuditEvent(
            action="user.create",
            target=f"user:{user.id}",
            detail={"username": username, "role": role},
        )
    )
    return user


def get_user(session: Session, username: str) -> User:
    user = session.scalar(select(User).where(User.username == username))
    if user is None:
        raise NotFound(f"no user named {username!r}")
    return user


def authenticate(session: Session, username: str, password: str) -> User | None:
    user = session.scalar(select(User).where(User.username == username))
    if user is None or not user.is_active or not verify_password(user.password_hash, password):
        return None
    return user


def create_token(session: Session, user: User, name: str = "") -> str:
    """A new API token; the plain text is returned once and only its hash is kept."""
    token = new_api_token()
    session.add(ApiToken(user_id=user.id, token_hash=token_digest(token), name=name))
    session.add(
        AuditEvent(
            user_id=user.id, action="token.create", target=f"user:{user.id}", detail={"name": name}
        )
    )
    session.flush()
    return token
