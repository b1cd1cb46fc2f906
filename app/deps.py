"""FastAPI dependencies, named once: the database session, settings and the current user."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.errors import Forbidden, NotAuthenticated
from app.models import ApiToken, User, utcnow
from app.security import same_token, token_digest
from app.services import limits
from app.services.accounts import sessions as login_sessions
from app.services.studies import blinding
from app.settings import Settings

SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}
CSRF_HEADER = "X-CSRF-Token"
SESSION_COOKIE = "medsynth_session"


def get_settings(request: Request) -> Settings:
    return request.app.state.settings


def get_session(request: Request) -> Iterator[Session]:
    session = request.app.state.sessionmaker()
    try:
        yield session
    finally:
        session.close()


SettingsDep = Annotated[Settings, Depends(get_settings)]
SessionDep = Annotated[Session, Depends(get_session)]


def _user_from_bearer(session: Session, header: str) -> User:
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise NotAuthenticated("Authorization header must be 'Bearer TOKEN'")
    row = session.scalar(select(ApiToken).where(ApiToken.token_hash == token_digest(token.strip())))
    if row is None or not row.user.is_active:
        raise NotAuthenticated("invalid or revoked API token")
    now = utcnow()
    if row.last_used_at is None or now - row.last_used_at > timedelta(minutes=1):
        row.last_used_at = now  # coarse, so busy scripts do not write on every request
        session.commit()
    return row.user


async def _check_csrf(request: Request) -> None:
    """Cookie-authenticated state changes must echo the session's CSRF token."""
    expected = getattr(request.state, "csrf", "")
    sent = request.headers.get(CSRF_HEADER)
    if sent is None and request.headers.get("content-type", "").startswith(
        "application/x-www-form-urlencoded"
    ):
        sent = (await request.form()).get("csrf_token")
    if not same_token(expected, sent if isinstance(sent, str) else None):
        raise Forbidden("CSRF token missing or invalid; reload the page and try again")


def _user_from_cookie(request: Request, session: Session) -> User:
    """The user of the browser's server-side session; the cookie is only a random id."""
    found = login_sessions.resolve(
        session, request.app.state.settings, request.cookies.get(SESSION_COOKIE)
    )
    if found.login is None:
        raise NotAuthenticated(found.why)
    request.state.login_id = found.login.id
    request.state.csrf = found.login.csrf
    return found.login.user


async def get_current_user(request: Request, session: SessionDep) -> User:
    auth = request.headers.get("authorization")
    if auth:
        user = _user_from_bearer(session, auth)
    else:
        user = _user_from_cookie(request, session)
        if request.method not in SAFE_METHODS:
            await _check_csrf(request)
    request.state.user = user
    return user


CurrentUser = Annotated[User, Depends(get_current_user)]


def login_id(request: Request) -> int | None:
    """The id of this browser's login session (None for a bearer token)."""
    return getattr(request.state, "login_id", None)


def get_admin_user(user: CurrentUser) -> User:
    if not user.is_admin:
        raise Forbidden("this action needs an admin account")
    return user


AdminUser = Annotated[User, Depends(get_admin_user)]


def generation_place(
    request: Request, user: CurrentUser, seeds: str | None = None
) -> Iterator[None]:
    """A place in the bounded image-generation queue for the whole request (429 when the user
    or the queue is at its limit, or `seeds` asks for more images than one request may)."""
    from app.services.training.snapshots import count_seeds

    if seeds is not None:
        limits.check_image_count(request.app.state.settings, count_seeds(seeds))
    with request.app.state.generation_queue.place(user.id):
        yield


# scope="function": the place is released before the response is sent, so the next request
# of the same user does not find it still taken.
GenerationPlace = Depends(generation_place, scope="function")


def blind(kind: str):
    """A route dependency for `dependencies=[...]` hiding a study's source images from its
    readers (app/services/studies/blinding.py): reads the id from the path parameter named
    in blinding.PARAMS (none for "generated") and applies blinding.check."""
    if kind not in blinding.KINDS:
        raise ValueError(f"unknown kind {kind!r}")

    def _guard(request: Request, session: SessionDep, user: CurrentUser) -> None:
        raw = request.path_params.get(blinding.PARAMS.get(kind, ""))
        ident = int(raw) if raw is not None and str(raw).isdigit() else None
        blinding.check(session, user, kind, ident)

    return Depends(_guard)
