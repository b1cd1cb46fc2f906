"""Bounded work queues: what any one user can make the server do at once.

Generating images runs a trainer subprocess of several hundred MB for up to minutes. Requests
take a place in one bounded queue: a few run, a few wait, each user has at most
`generate_per_user` places, and each request at most `generate_max_images` images. Beyond
that the answer is 429 with a message saying which limit was hit, at once, so a flood costs
nothing but the refusal.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager

from app.errors import TooManyRequests
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
