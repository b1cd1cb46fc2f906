"""The HTTP server configuration: uvicorn with limits against slow and greedy clients.

uvicorn closes idle keep-alive connections, but a connection that sends half its headers (or
stops in the middle of a body) stays open for ever; 600 such connections were still open after
65 s. `GuardedH11` adds a deadline for the request line and headers and an idle timeout while a
body arrives; `limit_concurrency` answers 503 beyond that many connections and requests.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

import h11
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

log = logging.getLogger("medsynth.server")


@dataclass(frozen=True)
class ServerLimits:
    header_timeout_s: float = 10.0  # request line + headers, from the first byte
    body_idle_timeout_s: float = 60.0  # longest pause between two chunks of a body
    keep_alive_s: int = 5  # idle connection between requests
    limit_concurrency: int = 256  # connections + running requests; beyond it 503
    backlog: int = 512
    graceful_shutdown_s: int = 30


class GuardedH11(H11Protocol):
    """uvicorn's h11 protocol with a header deadline and a body idle timeout."""

    header_timeout_s = ServerLimits.header_timeout_s
    body_idle_timeout_s = ServerLimits.body_idle_timeout_s
    _guard: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm(self.header_timeout_s)

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        state = self.conn.their_state
        if state is h11.IDLE:  # still in the request line or headers: the deadline stands
            if self._guard is None:
                self._arm(self.header_timeout_s)
        elif state is h11.SEND_BODY:
            self._arm(self.body_idle_timeout_s)  # each chunk restarts the idle timer
        else:
            self._disarm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def on_response_complete(self) -> None:
        self._disarm()  # the keep-alive timer takes over until the next request's first byte
        super().on_response_complete()

    def _arm(self, delay: float) -> None:
        self._disarm()
        self._guard = self.loop.call_later(delay, self._expired)

    def _disarm(self) -> None:
        if self._guard is not None:
            self._guard.cancel()
            self._guard = None

    def _expired(self) -> None:
        self._guard = None
        if self.transport.is_closing():
            return
        state = self.conn.their_state
        if state is h11.SEND_BODY and self.flow.read_paused:
            self._arm(self.body_idle_timeout_s)  # we stopped reading, not the client
            return
        if state in (h11.IDLE, h11.SEND_BODY):
            what = "headers" if state is h11.IDLE else "body"
            log.warning("closing a connection that stalled in its %s (%s)", what, self.client)
            self.transport.close()


def guarded_protocol(limits: ServerLimits) -> type[GuardedH11]:
    attrs = {
        "header_timeout_s": limits.header_timeout_s,
        "body_idle_timeout_s": limits.body_idle_timeout_s,
    }
    return type("GuardedH11Configured", (GuardedH11,), attrs)


def make_config(
    app, host: str, port: int, limits: ServerLimits, forwarded_allow_ips: str | None = None,
    log_level: str = "info",
) -> uvicorn.Config:  # fmt: skip  # noqa: ANN001
    """The uvicorn configuration `python -m app serve` runs (and the tests start)."""
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        http=guarded_protocol(limits),
        timeout_keep_alive=limits.keep_alive_s,
        limit_concurrency=limits.limit_concurrency,
        backlog=limits.backlog,
        timeout_graceful_shutdown=limits.graceful_shutdown_s,
        proxy_headers=forwarded_allow_ips is not None,
        forwarded_allow_ips=forwarded_allow_ips,
        log_level=log_level,
    )
