"""Password login: throttle check, argon2 on its own pool, then a new server-side session.

Async on purpose: the database steps run briefly on the request thread pool, and the hash
waits on the small argon2 pool, so a flood of anonymous logins cannot occupy the threads that
serve reviewers' slices.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from app.models import User
from app.security import verify_password_async
from app.services.accounts import sessions, throttle
from app.services.accounts.users import dummy_hash
from app.services.curation import audit
from app.settings import Settings


@dataclass(frozen=True)
class LoggedIn:
    user: User
    sid: str  # the cookie value; only its hash is stored
    csrf: str


def _prepare(
    session: Session, settings: Settings, username: str, client: str, agent: str
) -> tuple[User | None, str, list[str]]:
    """The account, the hash to verify against and the throttle keys (checked: 429 before any
    argon2 work). A device that logged into this account before is throttled on its own."""
    user = session.scalar(select(User).where(User.username == username))
    device = None
    if user is not None and client and sessions.seen_device(session, settings, user, client, agent):
        device = throttle.device_key(user.id, client, agent)
    keys = throttle.keys(username, client, device)
    throttle.check(session, keys)
    return user, user.password_hash if user is not None else dummy_hash(), keys


def _failed(session: Session, settings: Settings, keys: list[str], username: str, client: str):
    throttle.record_failure(session, settings, keys)
    audit.record(session, "login.failed", None, f"username:{username[:64]}", client=client)
    session.commit()


def _succeeded(session: Session, keys: list[str], user: User, client: str, agent: str):
    throttle.record_success(session, keys)
    audit.record(session, "login", user, f"user:{user.id}", client=client)
    return sessions.start(session, user, client, agent)  # commits


async def log_in(
    session: Session,
    settings: Settings,
    username: str,
    password: str,
    client: str = "",
    agent: str = "",
) -> LoggedIn | None:
    """A session for the right password of an active account, else None (audited either way).
    Raises TooManyRequests while the account or the address is backing off."""
    user, stored, keys = await run_in_threadpool(
        _prepare, session, settings, username, client, agent
    )
    ok = await verify_password_async(stored, password)
    if user is None or not ok or not user.is_active:
        await run_in_threadpool(_failed, session, settings, keys, username, client)
        return None
    sid, csrf = await run_in_threadpool(_succeeded, session, keys, user, client, agent)
    return LoggedIn(user, sid, csrf)


def log_out(session: Session, user: User, login_id: int | None) -> None:
    """End this browser's session (a bearer token has none to end). Commits."""
    audit.record(session, "logout", user, f"user:{user.id}")
    if login_id is not None:
        sessions.end(session, login_id, "logout")
    session.commit()
