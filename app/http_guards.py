"""App-wide HTTP guards: input every route must refuse with a 4xx, and the security headers.

Solved once here instead of per route: ids that do not fit the database's 64-bit integers,
text that cannot be stored (lone UTF-16 surrogates in JSON, invalid UTF-8 in form fields), and
the headers that keep pages out of frames and scripts to our own files.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any
from urllib.parse import unquote_to_bytes

from fastapi import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.errors import InvalidInput

MAX_ID = 2**63 - 1  # SQLite INTEGER and PostgreSQL BIGINT
MAX_CHECKED_BODY = 1024**2  # JSON and form bodies up to this size are checked (uploads are not)
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")
_LONG_NUMBER = re.compile(rb"\d{19}")

CSP = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",  # no inline scripts, no eval: htmx and static/js only
        "style-src 'self' 'unsafe-inline'",  # style="width: N%" attributes on progress bars
        "img-src 'self' data: blob:",
        "connect-src 'self'",
        "font-src 'self'",
        "object-src 'none'",
        "base-uri 'self'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)


def _numbers_and_texts(doc: Any) -> Iterator[int | str]:
    if isinstance(doc, dict):
        for key, value in doc.items():
            yield key
            yield from _numbers_and_texts(value)
    elif isinstance(doc, list):
        for value in doc:
            yield from _numbers_and_texts(value)
    elif isinstance(doc, int | str) and not isinstance(doc, bool):
        yield doc


def check_json(body: bytes) -> None:
    """Refuse numbers beyond 64 bits and strings that are not Unicode text (lone surrogates)."""
    if not (_SURROGATE_ESCAPE.search(body) or _LONG_NUMBER.search(body)):
        return  # the common case: nothing that could be either
    try:
        doc = json.loads(body)
    except ValueError:
        return  # FastAPI answers malformed JSON itself
    for item in _numbers_and_texts(doc):
        if isinstance(item, int) and abs(item) > MAX_ID:
            raise InvalidInput(f"the number {item} is out of range (at most 2^63 - 1)")
        if isinstance(item, str) and not _is_text(item):
            raise InvalidInput("text contains a lone surrogate (\\ud800-\\udfff), not a character")


def _is_text(value: str) -> bool:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def check_form(body: bytes) -> None:
    """Each percent-decoded form field must be UTF-8 (Starlette would swap in U+FFFD)."""
    for pair in body.split(b"&"):
        for part in pair.split(b"=", 1):
            try:
                unquote_to_bytes(part.replace(b"+", b" ")).decode("utf-8")
            except UnicodeDecodeError as exc:
                name = pair.split(b"=", 1)[0].decode("ascii", "replace")[:40]
                raise InvalidInput(f"{name}: form field is not valid UTF-8 text") from exc


def _body_kind(scope: Scope) -> str | None:
    """'json' or 'form' for a small body worth checking; None for the rest (uploads)."""
    headers = dict(scope.get("headers", []))
    ctype = headers.get(b"content-type", b"").decode("latin-1")
    length = headers.get(b"content-length", b"")
    if not length.isdigit() or not 0 < int(length) <= MAX_CHECKED_BODY:
        return None
    if ctype.startswith("application/json") or ctype.endswith("+json"):
        return "json"
    if ctype.startswith("application/x-www-form-urlencoded"):
        return "form"
    return None


class BodyCheck:
    """Pure ASGI middleware: reads a small JSON or form body once, checks it, and hands the same
    bytes on. A problem is left in the request state for `guard_input` to raise, so it reaches
    the user through the one error handler like every other 4xx."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = _body_kind(scope) if scope["type"] == "http" else None
        if kind is None:
            await self.app(scope, receive, send)
            return
        chunks, more = [], True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                break
            chunks.append(message.get("body", b""))
            more = message.get("more_body", False)
        body = b"".join(chunks)
        try:
            check_json(body) if kind == "json" else check_form(body)  # noqa: B018
        except InvalidInput as exc:
            scope.setdefault("state", {})["bad_input"] = exc.detail
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


async def guard_input(request: Request) -> None:
    """An app-wide dependency: path ids must fit 64 bits; bodies must have passed BodyCheck."""
    for name, raw in request.path_params.items():
        if isinstance(raw, str) and raw.isascii() and raw.isdigit() and int(raw) > MAX_ID:
            raise InvalidInput(f"{name}: {raw} is out of range (at most 2^63 - 1)")
    if detail := request.scope.get("state", {}).get("bad_input"):
        raise InvalidInput(detail)


SERVER_ERROR = "the server failed to answer this request; the error is logged for an admin"


class SecurityHeaders:
    """Pure ASGI middleware: the same security headers on every response, static files and
    errors included. An exception no handler took becomes a plain 500 here, inside this
    middleware, so it carries the headers too (Starlette's own 500 is sent outside every
    middleware); the exception is raised on so the server still logs it."""

    def __init__(self, app: ASGIApp, hsts: bool = False) -> None:
        self.app = app
        self.headers = [
            (b"content-security-policy", CSP.encode()),
            (b"x-frame-options", b"DENY"),
            (b"x-content-type-options", b"nosniff"),
            (b"referrer-policy", b"same-origin"),
            (b"cross-origin-opener-policy", b"same-origin"),
            (b"permissions-policy", b"camera=(), microphone=(), geolocation=()"),
        ]
        if hsts:
            self.headers.append((b"strict-transport-security", b"max-age=31536000"))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        started = False

        async def send_with_headers(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                present = {k.lower() for k, _ in message.get("headers", [])}
                extra = [(k, v) for k, v in self.headers if k not in present]
                message["headers"] = [*message.get("headers", []), *extra]
            await send(message)

        try:
            await self.app(scope, receive, send_with_headers)
        except Exception:
            if not started:
                await _server_error(scope, send_with_headers)
            raise


async def _server_error(scope: Scope, send: Send) -> None:
    """A 500 without a traceback: JSON under /api, else plain text."""
    if scope.get("path", "").startswith("/api"):
        body, ctype = json.dumps({"detail": SERVER_ERROR}).encode(), b"application/json"
    else:
        body, ctype = f"Server error: {SERVER_ERROR}.".encode(), b"text/plain; charset=utf-8"
    # the server drops the connection after an exception: say so, so no client reuses it
    headers = [(b"content-type", ctype), (b"content-length", str(len(body)).encode()),
               (b"connection", b"close")]  # fmt: skip
    await send({"type": "http.response.start", "status": 500, "headers": headers})
    await send({"type": "http.response.body", "body": body})
