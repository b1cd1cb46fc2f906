"""A lease on a database row, so that of several app instances on one database (a second web
node, or a restart overlapping the old process) only one runs the job monitor's passes.

Portable: a plain row (name, owner, expires_at) claimed and renewed by a compare-and-set
UPDATE, the same on SQLite and PostgreSQL (no advisory locks). A holder that dies loses the
lease after `ttl_s`; one that died on this same machine (its pid is gone) loses it at once.
Expiry uses each instance's clock: keep the machines' clocks in step (NTP) well within ttl_s.
"""

from __future__ import annotations

import logging
import os
import socket
import uuid
from datetime import timedelta
from functools import cache
from pathlib import Path

from sqlalchemy import exc, update
from sqlalchemy.orm import Session, sessionmaker

from app.models import MonitorLease, utcnow

log = logging.getLogger(__name__)
DEFAULT_TTL_S = 30.0


@cache
def _machine() -> str:
    """This host and pid namespace: pids can be checked only where this is the same."""
    boot = Path("/proc/sys/kernel/random/boot_id")
    boot_id = boot.read_text().strip()[:8] if boot.exists() else "noboot"
    try:
        pid_ns = str(os.stat("/proc/self/ns/pid").st_ino)
    except OSError:
        pid_ns = "nons"
    return f"{socket.gethostname()[:64]}|{boot_id}|{pid_ns}"


def _died_here(owner: str) -> bool:
    """The owner ran on this machine and its process no longer exists."""
    machine, _, rest = owner.rpartition("/pid")
    if machine != _machine():
        return False
    try:
        pid = int(rest.split("/", 1)[0])
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except (ValueError, PermissionError):
        return False
    return False


class LeaseHolder:
    """Claims, renews and releases one named lease for this app instance."""

    def __init__(self, sessions: sessionmaker[Session], name: str, ttl_s: float = DEFAULT_TTL_S):
        self.sessions = sessions
        self.name = name
        self.ttl = timedelta(seconds=ttl_s)
        self.owner = f"{_machine()}/pid{os.getpid()}/{uuid.uuid4().hex[:12]}"
        self.held = False

    def hold(self) -> bool:
        """Claim the lease if it is free, expired or left by a dead process here, or renew it
        if it is ours; True while this instance holds it. Call it before each pass."""
        held = self._claim()
        if held != self.held:
            log.info("%s lease %s by %s", self.name, "taken" if held else "lost", self.owner)
        self.held = held
        return held

    def release(self) -> None:
        """Give the lease up now (a clean stop), so another instance takes over at once."""
        with self.sessions() as session:
            session.execute(
                update(MonitorLease)
                .where(MonitorLease.name == self.name, MonitorLease.owner == self.owner)
                .values(expires_at=utcnow() - self.ttl)
            )
            session.commit()
        self.held = False

    def _claim(self) -> bool:
        now = utcnow()
        with self.sessions() as session:
            row = session.get(MonitorLease, self.name)
            if row is None:  # first use: whoever inserts first holds it
                session.add(
                    MonitorLease(name=self.name, owner=self.owner, expires_at=now + self.ttl)
                )
                try:
                    session.commit()
                    return True
                except exc.IntegrityError:
                    session.rollback()
                    return False
            seen_owner, seen_expiry = row.owner, row.expires_at
            free = seen_owner == self.owner or seen_expiry <= now or _died_here(seen_owner)
            if not free:
                return False
            # Compare-and-set on what we read: if another instance renewed or took it
            # meanwhile, no row matches and we do not hold it.
            taken = session.execute(
                update(MonitorLease)
                .where(
                    MonitorLease.name == self.name,
                    MonitorLease.owner == seen_owner,
                    MonitorLease.expires_at == seen_expiry,
                )
                .values(owner=self.owner, expires_at=now + self.ttl)
                .execution_options(synchronize_session=False)
            )
            session.commit()
            return taken.rowcount == 1
