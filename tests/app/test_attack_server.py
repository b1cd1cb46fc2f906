"""Attack suite, the server and every page: slow clients are cut off, and every response
carries the security headers (frames, CSP, sniffing, referrer)."""

from __future__ import annotations

import socket
import threading
import time

import httpx
import pytest
import uvicorn

from app.main import create_app
from app.server import ServerLimits, make_config
from tests.app.sessions import browser

PAGES = ["/", "/volumes", "/datasets", "/jobs", "/studies", "/account", "/users", "/api/me",
         "/api/volumes", "/docs", "/openapi.json", "/healthz", "/static/css/app.css",
         "/static/js/htmx.min.js", "/no-such-page", "/api/volumes/999999"]  # fmt: skip


def _assert_security_headers(r: httpx.Response, where: str) -> None:
    csp = r.headers.get("content-security-policy", "")
    assert "frame-ancestors 'none'" in csp and "script-src 'self'" in csp, where
    assert "unsafe-inline" not in csp.split("script-src")[1].split(";")[0], where
    assert "unsafe-eval" not in csp, where
    assert r.headers.get("x-frame-options") == "DENY", where
    assert r.headers.get("x-content-type-options") == "nosniff", where
    assert r.headers.get("referrer-policy") == "same-origin", where


def test_every_page_has_the_security_headers(live_app):
    with browser(live_app.url, "admin") as c:
        for path in PAGES:
            _assert_security_headers(c.get(path), path)
    with browser(live_app.url) as anonymous:
        for path in ["/login", "/", "/api/me", "/docs"]:
            _assert_security_headers(anonymous.get(path), "anonymous " + path)


def test_templates_have_no_inline_scripts_or_handlers():
    """The CSP allows scripts from /static only: no <script> bodies, no on*= attributes."""
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parents[2] / "templates"
    # (a <script type="application/json"> data block is not a script and is allowed)
    inline = re.compile(
        r"<script(?![^>]*\b(src=|type=\"application/json\"))[^>]*>|\son[a-z]+\s*=|hx-on|javascript:",
        re.I,
    )
    found = [f"{p.relative_to(root)}: {m.group(0)}" for p in root.rglob("*.html")
             for m in inline.finditer(p.read_text())]  # fmt: skip
    assert found == []


class _Server(uvicorn.Server):
    def install_signal_handlers(self) -> None:
        pass


@pytest.fixture
def guarded(settings, db):
    """The app behind the same uvicorn configuration as `serve`, with short timeouts."""
    port = socket.socket()
    port.bind(("127.0.0.1", 0))
    number = port.getsockname()[1]
    port.close()
    limits = ServerLimits(header_timeout_s=0.5, body_idle_timeout_s=0.5, keep_alive_s=1)
    server = _Server(make_config(create_app(settings), "127.0.0.1", number, limits,
                                 log_level="warning"))  # fmt: skip
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.02)
    yield number
    server.should_exit = True
    thread.join(timeout=10)


def _closed_within(sock: socket.socket, seconds: float) -> bool:
    sock.settimeout(seconds)
    try:
        return sock.recv(1024) == b""
    except TimeoutError:
        return False


def test_half_sent_headers_are_cut_off(guarded):
    with socket.create_connection(("127.0.0.1", guarded)) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        for _ in range(3):  # trickling bytes does not extend the deadline
            time.sleep(0.2)
            sock.sendall(b"X-Slow: 1\r\n")
        assert _closed_within(sock, 2.0)
    assert httpx.get(f"http://127.0.0.1:{guarded}/healthz").status_code == 200


def test_a_stalled_body_is_cut_off(guarded):
    with socket.create_connection(("127.0.0.1", guarded)) as sock:
        sock.sendall(b"POST /api/me/tokens HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n"
                     b"Content-Type: application/json\r\n\r\n{")  # fmt: skip
        assert _closed_within(sock, 2.0)


def test_api_docs_are_for_logged_in_users_only(live_app, reader):
    with httpx.Client(base_url=live_app.url) as anonymous:
        r = anonymous.get("/openapi.json", headers={"accept": "application/json"})
        assert r.status_code == 401
        r = anonymous.get("/docs")
        assert r.status_code == 303 and r.headers["location"].startswith("/login")
    spec = reader.get("/openapi.json").json()
    assert "/api/me/tokens" in spec["paths"] and "/openapi.json" not in spec["paths"]
    token_in = spec["components"]["schemas"]["TokenIn"]["properties"]
    assert {"name", "password"} <= set(token_in)
    page = reader.get("/docs")
    assert page.status_code == 200 and "/api/me/tokens" in page.text and "TokenCreated" in page.text
