"""Accounts over real HTTP: sessions, CSRF, bearer tokens, roles, and login on every route."""

from __future__ import annotations

import re

import httpx
from fastapi.routing import APIRoute
from sqlalchemy import select

from app.main import create_app
from app.models import AuditEvent
from tests.app.sessions import browser, form_token, login, page_token
from tests.conftest import PASSWORD

PUBLIC = {"/login", "/healthz"}


def _actions(live_app) -> list[str]:
    with live_app.sessions() as s:
        return list(s.scalars(select(AuditEvent.action).order_by(AuditEvent.id)))


def test_login_then_logout_over_http_with_cookies(live_app):
    with browser(live_app.url) as c:
        r = login(c, "reader1", next="/account")
        assert r.status_code == 303 and r.headers["location"] == "/account"
        assert c.get("/api/me").json()["username"] == "reader1"
        page = c.get("/account")
        assert page.status_code == 200 and "reader1" in page.text
        assert c.post("/logout").status_code == 403  # no CSRF token
        r = c.post("/logout", data={"csrf_token": page_token(page.text)})
        assert r.status_code == 303 and r.headers["location"] == "/login"
        assert c.get("/api/me").status_code == 401
    assert _actions(live_app)[-2:] == ["login", "logout"]


def test_wrong_password_shows_the_form_again_and_is_audited(live_app):
    with browser(live_app.url) as c:
        r = login(c, "reader1", password="not-the-password")
        assert r.status_code == 401 and "wrong username or password" in r.text
        assert 'name="username"' in r.text
        assert login(c, "nobody", password="whatever1").status_code == 401
        assert c.get("/api/me").status_code == 401
    assert _actions(live_app)[-2:] == ["login.failed", "login.failed"]


def test_login_without_the_forms_token_is_refused(live_app):
    """Login CSRF: a foreign page cannot log the browser into an attacker's account."""
    with browser(live_app.url) as c:
        r = c.post("/login", data={"username": "reader1", "password": PASSWORD})
        assert r.status_code == 403 and "expired" in r.text
        assert c.get("/api/me").status_code == 401


def test_login_rotates_session_and_csrf_token(live_app):
    with browser(live_app.url) as c:
        before = form_token(c.get("/login").text)
        cookie_before = c.cookies["medsynth_session"]
        assert login(c, "admin").status_code == 303
        after = page_token(c.get("/").text)
        assert after != before and c.cookies["medsynth_session"] != cookie_before


NEXT_TARGETS = [
    ("/datasets", "/datasets"),
    ("/volumes/3?slice=4", "/volumes/3?slice=4"),
    ("https://evil.example/x", "/"),
    ("//evil.example/x", "/"),
    ("/\\evil.example", "/"),
    ("http:/evil.example", "/"),
    ("/login?next=//evil.example", "/"),
]


def test_next_redirect_stays_on_this_site(live_app):
    with browser(live_app.url) as c:
        for target, expected in NEXT_TARGETS:
            r = login(c, "reader1", next=target)
            assert r.status_code == 303 and r.headers["location"] == expected, target
            c.cookies.clear()


def test_csrf_is_required_for_cookie_authenticated_changes(live_app):
    with browser(live_app.url, "reader1") as c:
        token = page_token(c.get("/account").text)
        r = c.post("/account/tokens", data={"name": "x"})
        assert r.status_code == 403
        r = c.post("/account/tokens", data={"name": "x", "csrf_token": "wrong"})
        assert r.status_code == 403
        form = {"name": "via-form", "password": PASSWORD, "csrf_token": token}
        r = c.post("/account/tokens", data=form)
        assert r.status_code == 200 and "via-form" in r.text
        form = {"name": "via-header", "password": PASSWORD}
        r = c.post("/account/tokens", data=form, headers={"X-CSRF-Token": token})
        assert r.status_code == 200 and "via-header" in r.text


def test_account_token_is_shown_once_works_as_bearer_and_can_be_revoked(live_app):
    with browser(live_app.url, "reader2") as c:
        token = page_token(c.get("/account").text)
        form = {"name": "script", "password": PASSWORD, "csrf_token": token}
        r = c.post("/account/tokens", data=form)
        plain = re.search(r'id="new-token">([^<]+)<', r.text).group(1)
        assert r.headers["cache-control"] == "no-store"
        page = c.get("/account").text
        assert plain not in page and "script" in page
        bearer = {"Authorization": f"Bearer {plain}"}
        assert httpx.get(live_app.url + "/api/me", headers=bearer).json()["username"] == "reader2"
        token_id = re.findall(r"/account/tokens/(\d+)/revoke", page)[-1]
        r = c.post(f"/account/tokens/{token_id}/revoke", data={"csrf_token": token})
        assert r.status_code == 303
        r = httpx.get(live_app.url + "/api/me", headers=bearer)
        assert r.status_code == 401 and "revoked" in r.json()["detail"]
    assert {"token.create", "token.revoke"} <= set(_actions(live_app))


def test_bearer_requests_need_no_csrf_token(reader):
    assert reader.get("/api/me").json() == {
        "id": 2,
        "username": "reader1",
        "role": "reviewer",
        "is_active": True,
    }
    r = reader.post("/account/tokens", data={"name": "from-a-script", "password": PASSWORD})
    assert r.status_code == 200
    r = reader.post("/api/me/tokens", json={"name": "json", "password": PASSWORD})
    assert r.status_code == 201 and r.json()["token"].startswith("ms_")


def test_bad_bearer_token_is_401(live_app):
    r = httpx.get(live_app.url + "/api/me", headers={"Authorization": "Bearer ms_nope"})
    assert r.status_code == 401 and r.json()["detail"]


def test_reviewer_cannot_manage_users(reader):
    r = reader.post("/api/users", json={"username": "x1", "role": "admin", "password": "p" * 10})
    assert r.status_code == 403 and "admin" in r.json()["detail"]
    assert reader.get("/api/users").status_code == 403
    assert reader.post("/api/users/1/deactivate").status_code == 403
    assert reader.get("/users").status_code == 403


def test_admin_creates_and_deactivates_a_user(live_app, admin):
    body = {"username": "radiologist", "role": "reviewer", "password": "long-enough-pw"}
    r = admin.post("/api/users", json=body)
    assert r.status_code == 201 and r.json()["role"] == "reviewer"
    uid = r.json()["id"]
    assert admin.post("/api/users", json=body).status_code == 409
    short = admin.post("/api/users", json={**body, "username": "other", "password": "short"})
    assert short.status_code == 422 and "10 characters" in short.json()["detail"]
    with browser(live_app.url) as c:
        assert login(c, "radiologist", "long-enough-pw").status_code == 303
        r = admin.post(f"/api/users/{uid}/deactivate")
        assert r.status_code == 200 and r.json()["is_active"] is False
        assert c.get("/api/me").status_code == 401  # the open session ends too
        assert login(c, "radiologist", "long-enough-pw").status_code == 401
    assert admin.post("/api/users/1/deactivate").status_code == 409  # not yourself
    assert "radiologist" in admin.get("/users").text  # the row stays
    assert {"user.create", "user.deactivate"} <= set(_actions(live_app))


def test_admin_user_form_and_inline_errors(live_app):
    with browser(live_app.url, "admin") as c:
        token = page_token(c.get("/users").text)
        form = {"username": "nurse", "role": "reviewer", "password": "pw-long-enough"}
        r = c.post("/users", data={**form, "csrf_token": token})
        assert r.status_code == 303
        r = c.post("/users", data={**form, "csrf_token": token})
        assert r.status_code == 409 and "already exists" in r.text


def test_change_password(live_app):
    with browser(live_app.url, "reader1") as c:
        token = page_token(c.get("/account").text)
        form = {"current": "wrong-password", "new": "new-password-1", "confirm": "new-password-1"}
        r = c.post("/account/password", data={**form, "csrf_token": token})
        assert r.status_code == 422 and "current password is wrong" in r.text
        form["current"] = PASSWORD
        r = c.post("/account/password", data={**form, "csrf_token": token})
        assert r.status_code == 200 and "Password changed" in r.text
    with browser(live_app.url) as c:
        assert login(c, "reader1", PASSWORD).status_code == 401
        assert login(c, "reader1", "new-password-1").status_code == 303


def _concrete(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "1", path)


def _walk(routes, prefix: str = ""):
    """(full path, route) for every route, through included routers (FastAPI includes lazily)."""
    for route in routes:
        sub = getattr(route, "original_router", None)
        if sub is not None:
            ctx = getattr(route, "include_context", None)
            yield from _walk(sub.routes, prefix + getattr(ctx, "prefix", ""))
        else:
            yield prefix + getattr(route, "path", ""), route


def test_every_route_needs_a_user(live_app):
    routes = list(_walk(create_app(live_app.settings).routes))
    checked = 0
    with httpx.Client(base_url=live_app.url, follow_redirects=False, timeout=60) as c:
        for path, route in routes:
            if not isinstance(route, APIRoute) or path in PUBLIC:
                continue
            for method in sorted(route.methods - {"HEAD"}):
                r = c.request(method, _concrete(path))
                where = f"{method} {path}"
                if path.startswith("/api"):
                    assert r.status_code == 401, where
                    assert r.json()["detail"], where
                else:
                    assert r.status_code == 303, where
                    assert r.headers["location"].startswith("/login?next="), where
                checked += 1
    assert checked >= 10
    other = [path for path, r in routes if not isinstance(r, APIRoute)]
    assert other == ["/static"], "only static files may bypass the login check"


def test_a_password_change_ends_other_sessions_but_keeps_this_one(live_app):
    with browser(live_app.url, "reader1") as other, browser(live_app.url, "reader1") as this:
        page = this.get("/account")
        r = this.post(
            "/account/password",
            data={
                "csrf_token": form_token(page.text),
                "current": PASSWORD,
                "new": "another-long-password",
                "confirm": "another-long-password",
            },
        )
        assert r.status_code == 200 and "Password changed" in r.text
        assert this.get("/api/me").status_code == 200
        ended = other.get("/api/me")
        assert ended.status_code == 401 and "log in again" in ended.json()["detail"]
