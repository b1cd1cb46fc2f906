"""Browser-like logins for tests: cookies, the login form's CSRF token, the page's CSRF token."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager

import httpx

from tests.conftest import PASSWORD

_FORM_TOKEN = re.compile(r'name="csrf_token" value="([^"]+)"')
_HTMX_TOKEN = re.compile(r'"X-CSRF-Token": "([^"]+)"')


def form_token(html: str) -> str:
    m = _FORM_TOKEN.search(html)
    assert m, "no csrf_token field in the page"
    return m.group(1)


def page_token(html: str) -> str:
    """The session's CSRF token as base.html hands it to htmx."""
    m = _HTMX_TOKEN.search(html)
    assert m and m.group(1), "no X-CSRF-Token in hx-headers"
    return m.group(1)


def login(client: httpx.Client, username: str, password: str = PASSWORD, next: str = "/"):
    """GET the form (pre-session token), POST it; returns the POST response."""
    page = client.get("/login", params={"next": next})
    assert page.status_code == 200
    data = {"username": username, "password": password, "next": next}
    return client.post("/login", data={**data, "csrf_token": form_token(page.text)})


@contextmanager
def browser(url: str, username: str | None = None) -> Iterator[httpx.Client]:
    """A cookie-keeping client that does not follow redirects, logged in as `username`."""
    with httpx.Client(base_url=url, follow_redirects=False, timeout=60) as client:
        if username:
            r = login(client, username)
            assert r.status_code == 303, r.text
        yield client
