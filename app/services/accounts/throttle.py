"""Login throttling per account and per client address, kept in the database.

A few free failures, then a back-off that doubles with each further failure up to a cap; a
success clears the account's count, and counts are forgotten after a quiet day. Nobody is ever
locked out for good: the longest wait is `login_backoff_max_s`. While a key is blocked the
password is not even checked (no argon2 work for the attacker to cause) and nothing is counted.

Guesses are throttled, not the owner: from a known device (an address and browser that have
logged into this account before, see `sessions.seen_device`) only that device's own key counts
and gates, so neither strangers failing on the account nor strangers spraying names from the
same address (one NAT, one proxy) keep the owner out; a device that guesses wrong backs off
on its own key like any other.
"""

from __future__ import annotations

import hashlib
import math
from datetime import timedelta

from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.errors import TooManyRequests
from app.models import LoginThrottle, utcnow
from app.settings import Settings


def keys(username: str, client: str, device: str | None = None) -> list[str]:
    """The keys an attempt is checked and counted on: a known device's own key alone, else the
    account's key (case-insensitive, whether or not it exists) and the address's key."""
    if device is not None:
        return [device]
    out = [f"user:{username.strip().lower()[:150]}"]
    if client:
        out.append(f"ip:{client[:150]}")
    return out


def device_key(user_id: int, client: str, agent: str) -> str:
    """A known device's key: the account and a digest of (address, user agent)."""
    digest = hashlib.sha256(f"{client}\n{agent}".encode()).hexdigest()[:40]
    return f"dev:{user_id}:{digest}"


def _free(settings: Settings, key: str) -> int:
    return (
        settings.login_free_attempts_ip if key.startswith("ip:") else settings.login_free_attempts
    )


def retry_after(session: Session, key_list: list[str]) -> float:
    """Seconds until every key may try again (0: now)."""
    now = utcnow()
    rows = session.scalars(select(LoginThrottle).where(LoginThrottle.key.in_(key_list)))
    waits = [(r.blocked_until - now).total_seconds() for r in rows if r.blocked_until]
    return max([0.0, *waits])


def check(session: Session, key_list: list[str]) -> None:
    """Raise 429 with Retry-After while any key is blocked."""
    wait = retry_after(session, key_list)
    if wait > 0:
        seconds = max(1, math.ceil(wait))
        raise TooManyRequests(
            f"too many failed logins; try again in {seconds} s", retry_after=seconds
        )


def _bump(session: Session, settings: Settings, key: str) -> None:
    now = utcnow()
    forget = now - timedelta(seconds=settings.login_forget_s)
    session.execute(  # a quiet day starts the count afresh
        update(LoginThrottle)
        .where(LoginThrottle.key == key, LoginThrottle.last_failure_at < forget)
        .values(failures=0, blocked_until=None)
    )
    bumped = session.execute(
        update(LoginThrottle)
        .where(LoginThrottle.key == key)
        .values(failures=LoginThrottle.failures + 1, last_failure_at=now)
    )
    if not bumped.rowcount:
        try:
            with session.begin_nested():
                session.add(LoginThrottle(key=key, failures=1, last_failure_at=now))
        except IntegrityError:  # a parallel failure inserted it first
            session.execute(
                update(LoginThrottle)
                .where(LoginThrottle.key == key)
                .values(failures=LoginThrottle.failures + 1, last_failure_at=now)
            )
    failures = session.scalar(select(LoginThrottle.failures).where(LoginThrottle.key == key))
    over = (failures or 0) - _free(settings, key)
    if over > 0:
        delay = min(settings.login_backoff_s * 2 ** min(over - 1, 30), settings.login_backoff_max_s)
        session.execute(
            update(LoginThrottle)
            .where(LoginThrottle.key == key)
            .values(blocked_until=now + timedelta(seconds=delay))
        )


def record_failure(session: Session, settings: Settings, key_list: list[str]) -> None:
    """Count one failed attempt on every key (the caller commits with its audit row)."""
    for key in key_list:
        _bump(session, settings, key)


def record_success(session: Session, key_list: list[str]) -> None:
    """A right password clears the account's or the device's count (not the address's: one
    valid account must not reset an attacker's counter against the others)."""
    user_keys = [k for k in key_list if k.startswith(("user:", "dev:"))]
    session.execute(delete(LoginThrottle).where(LoginThrottle.key.in_(user_keys)))


def purge(session: Session, settings: Settings) -> int:
    """Forget counts older than `login_forget_s` (start-up housekeeping). Commits."""
    cutoff = utcnow() - timedelta(seconds=settings.login_forget_s)
    result = session.execute(delete(LoginThrottle).where(LoginThrottle.last_failure_at < cutoff))
    session.commit()
    return result.rowcount or 0
