"""Bounded work queues: what any one user can make the server do at once.

Every request that starts a trainer subprocess (image generation, measuring the metric plan)
takes a place in the bounded queue of its kind: a few run, a few wait, each user has at most
`generate_per_user` places, and each generation request at most `generate_max_images`
images. Beyond that the answer is 429 with a message saying which limit was hit, at once, so
a flood costs nothing but the refusal. Work whose answer is the same for everyone (a plan)
is also single-flight: while it is being computed, further askers wait for that one result.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Hashable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from app.errors import InvalidInput, TooManyRequests
from app.settings import Settings

WAIT_LIMIT_S = 900  # a place in the queue is given up after this long (the request answers 429)


class WorkQueue:
    """`max_running` at a time, `max_waiting` more queued, `per_user` places per user."""

    def __init__(self, what: str, max_running: int, max_waiting: int, per_user: int) -> None:
        self.what = what
        self.max_running, self.max_waiting, self.per_user = max_running, max_waiting, per_user
        self._lock = threading.Lock()
        self._slots = threading.Semaphore(max(1, max_running))
        self._by_user: Counter[int] = Counter()
        self.running = 0
        self.waiting = 0

    def _admit(self, user_id: int) -> None:
        with self._lock:
            if self._by_user[user_id] >= self.per_user:
                raise TooManyRequests(
                    f"you already have {self._by_user[user_id]} {self.what} running or queued "
                    f"(at most {self.per_user} per user); wait until it has finished",
                    retry_after=5,
                )
            if self.running + self.waiting >= max(1, self.max_running) + self.max_waiting:
                raise TooManyRequests(
                    f"the {self.what} queue is full ({self.running} running, {self.waiting} "
                    "waiting); try again in a minute",
                    retry_after=30,
                )
            self._by_user[user_id] += 1
            self.waiting += 1

    def _leave(self, user_id: int, was_running: bool) -> None:
        with self._lock:
            self._by_user[user_id] -= 1
            if self._by_user[user_id] <= 0:
                del self._by_user[user_id]
            if was_running:
                self.running -= 1
            else:
                self.waiting -= 1

    @contextmanager
    def place(self, user_id: int) -> Iterator[None]:
        """Hold a place for the body of the `with`; blocks (in a worker thread) while queued."""
        self._admit(user_id)
        if not self._slots.acquire(timeout=WAIT_LIMIT_S):
            self._leave(user_id, was_running=False)
            raise TooManyRequests(f"the {self.what} queue did not move; try again later", 60)
        with self._lock:
            self.waiting -= 1
            self.running += 1
        try:
            yield
        finally:
            self._slots.release()
            self._leave(user_id, was_running=True)


@dataclass
class _Flight:
    done: threading.Event = field(default_factory=threading.Event)
    value: Any = None
    error: BaseException | None = None


class SingleFlight:
    """One computation per key at a time: a caller asking for a key being computed waits for
    that computation and gets its result (or its exception) instead of starting another."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._flights: dict[Hashable, _Flight] = {}

    def run(self, key: Hashable, compute: Callable[[], Any]) -> Any:
        with self._lock:
            flight = self._flights.get(key)
            leader = flight is None
            if leader:
                flight = self._flights[key] = _Flight()
        if not leader:
            flight.done.wait()
            if flight.error is not None:
                raise flight.error
            return flight.value
        try:
            flight.value = compute()
            return flight.value
        except BaseException as exc:
            flight.error = exc
            raise
        finally:
            with self._lock:
                del self._flights[key]
            flight.done.set()


_shared: dict[str, WorkQueue] = {}
_shared_lock = threading.Lock()


def shared_queue(kind: str, settings: Settings) -> WorkQueue:
    """The process-wide queue of one kind of trainer process (made on first use), for
    services that start one without a request at hand."""
    with _shared_lock:
        if kind not in _shared:
            _shared[kind] = WorkQueue(
                kind, 1, settings.generate_max_waiting, settings.generate_per_user
            )
        return _shared[kind]


def generation_queue(settings: Settings) -> WorkQueue:
    return WorkQueue(
        "image generation",
        settings.generate_max_running,
        settings.generate_max_waiting,
        settings.generate_per_user,
    )


def check_image_count(settings: Settings, count: int) -> None:
    """The per-request cap on generated images (429 like the other generation limits)."""
    cap = settings.generate_max_images
    if count > cap:
        raise TooManyRequests(
            f"seeds: {count} images asked for, at most {cap} per request; ask for fewer "
            f"(e.g. 0-{cap - 1}) and generate the rest in further requests",
            retry_after=1,
        )


def duration(seconds: float) -> str:
    """Seconds as a person reads them: '40 min', '3.5 h', '12 days', '467 years'."""
    if seconds < 3600:
        return f"{seconds / 60:.0f} min"
    if seconds < 2 * 86400:
        return f"{seconds / 3600:.1f} h"
    if seconds < 2 * 365 * 86400:
        return f"{seconds / 86400:,.0f} days"
    return f"{seconds / (365 * 86400):,.0f} years"


def time_budget_error(settings: Settings, seconds: float, what: str, lower: str) -> str | None:
    """Why work estimated at `seconds` is refused at submission (None when it fits the budget
    MEDSYNTH_MAX_JOB_HOURS); `lower` names the fields that shorten it."""
    budget = settings.max_job_hours * 3600
    if seconds <= budget:
        return None
    return (
        f"{what} would take about {duration(seconds)}, more than the time budget of "
        f"{settings.max_job_hours:g} h (MEDSYNTH_MAX_JOB_HOURS); lower {lower}"
    )


def check_time_budget(settings: Settings, seconds: float, what: str, lower: str) -> None:
    """422 for work that would run past the time budget (see time_budget_error)."""
    if (why := time_budget_error(settings, seconds, what, lower)) is not None:
        raise InvalidInput(why)
