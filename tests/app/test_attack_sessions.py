"""Attack suite, sessions and tokens, through real HTTP: a copied cookie stops working the moment
its session ends; a stolen session cannot mint a token or keep one past a password change."""

from __future__ import annotations

import time
from dataclasses import replace

import httpx
import pytest

from tests.app.sessions import browser, login, page_token
from tests.conftest import PASSWORD

NEW_PASSWORD = "a-brand-new-passphrase"


@pytest.fixture
def settings(settings):
    return replace(settings, session_idle_s=2)


def _replay(live_app, cookie: str) -> httpx.Response:
    """What an attacker holding a copy of the cookie gets."""
    with httpx.Client(base_url=live_app.url, cookies={"medsynth_session": cookie}) as c:
        return c.get("/api/me")


def test_cookie_replayed_after_logout_is_refused(live_app):
    with browser(live_app.url, "reader1") as c:
        stolen = c.cookies["medsynth_session"]
        assert _replay(live_app, stolen).status_code == 200
        r = c.post("/logout", data={"csrf_token": page_token(c.get("/account").text)})
        assert r.status_code == 303
    r = _replay(live_app, stolen)
    assert r.status_code == 401 and "logged out" in r.json()["detail"]
    with httpx.Client(base_url=live_app.url, cookies={"medsynth_session": stolen}) as c:
        assert c.post("/api/me/tokens", json={"name": "x", "password": PASSWORD}).status_code == 401


def test_cookie_replayed_after_a_password_change_is_refused(live_app):
    with browser(live_app.url, "reader1") as victim, browser(live_app.url, "reader1") as thief:
        stolen = thief.cookies["medsynth_session"]
        form = {"current": PASSWORD, "new": NEW_PASSWORD, "confirm": NEW_PASSWORD}
        token = page_token(victim.get("/account").text)
        r = victim.post("/account/password", data={**form, "csrf_token": token})
        assert r.status_code == 200 and "Password changed" in r.text
        assert victim.get("/api/me").status_code == 200  # the session that changed it stays
    assert _replay(live_app, stolen).status_code == 401


def test_cookie_replayed_after_deactivation_or_end_all_sessions_is_refused(live_app, admin):
    with browser(live_app.url, "reader2") as c:
        stolen = c.cookies["medsynth_session"]
        assert admin.post("/api/users/3/deactivate").status_code == 200
        assert _replay(live_app, stolen).status_code == 401
        assert admin.post("/api/users/3/activate").status_code == 200
        assert _replay(live_app, stolen).status_code == 401  # reactivation revives nothing
    with browser(live_app.url, "reader2") as a, browser(live_app.url, "reader2") as b:
        r = admin.post("/api/users/3/sessions/end")
        assert r.status_code == 200 and r.json() == {"ended": 2}
        assert a.get("/api/me").status_code == 401 and b.get("/api/me").status_code == 401
    assert admin.post("/api/users/99/sessions/end").status_code == 404


def test_token_creation_needs_the_password(live_app, reader):
    with browser(live_app.url, "reader1") as c:
        token = page_token(c.get("/account").text)
        r = c.post("/account/tokens", data={"name": "stolen", "csrf_token": token})
        assert r.status_code == 403 and "password" in r.text
        form = {"name": "stolen", "password": "guessing-wrong", "csrf_token": token}
        assert c.post("/account/tokens", data=form).status_code == 403
        r = c.post("/api/me/tokens", json={"name": "stolen"}, headers={"X-CSRF-Token": token})
        assert r.status_code == 403
    assert reader.post("/api/me/tokens", json={"name": "x"}).status_code == 403
    assert [t["name"] for t in reader.get("/api/me/tokens").json()] == [""]  # only the fixture's


def test_a_password_change_revokes_tokens_unless_asked_to_keep_them(live_app):
    made = httpx.post(
        live_app.url + "/api/me/tokens",
        json={"name": "script", "password": PASSWORD},
        headers={"Authorization": f"Bearer {live_app.tokens['reader1']}"},
    ).json()["token"]
    bearer = {"Authorization": f"Bearer {made}"}
    body = {"current": PASSWORD, "new": NEW_PASSWORD, "revoke_tokens": False}
    r = httpx.post(live_app.url + "/api/me/password", json=body, headers=bearer)
    assert r.status_code == 200 and r.json()["tokens_revoked"] == 0
    assert httpx.get(live_app.url + "/api/me", headers=bearer).status_code == 200
    body = {"current": NEW_PASSWORD, "new": "yet-another-passphrase"}  # default: revoke
    r = httpx.post(live_app.url + "/api/me/password", json=body, headers=bearer)
    assert r.status_code == 200 and r.json()["tokens_revoked"] == 2
    assert httpx.get(live_app.url + "/api/me", headers=bearer).status_code == 401


def test_account_page_lists_sessions_and_one_can_be_ended(live_app):
    with browser(live_app.url, "reader1") as other, browser(live_app.url, "reader1") as this:
        sessions = this.get("/api/me/sessions").json()
        assert len(sessions) == 2 and sum(s["current"] for s in sessions) == 1
        page = this.get("/account")
        assert "this session" in page.text and "python-httpx" in page.text
        other_id = next(s["id"] for s in sessions if not s["current"])
        r = this.post(
            f"/account/sessions/{other_id}/end", data={"csrf_token": page_token(page.text)}
        )
        assert r.status_code == 303
        assert other.get("/api/me").status_code == 401 and this.get("/api/me").status_code == 200
        r = this.post(
            f"/account/sessions/{other_id}/end", data={"csrf_token": page_token(page.text)}
        )
        assert r.status_code == 404


def test_an_idle_session_ends(live_app):
    with browser(live_app.url, "reader1") as c:
        assert c.get("/api/me").status_code == 200
        time.sleep(2.5)
        r = c.get("/api/me")
        assert r.status_code == 401 and "idle" in r.json()["detail"]


def test_a_session_in_use_outlives_the_idle_limit(live_app):
    with browser(live_app.url, "reader1") as c:
        for _ in range(5):
            time.sleep(0.8)
            assert c.get("/api/me").status_code == 200


def test_the_cookie_holds_only_a_random_id(live_app):
    with browser(live_app.url) as c:
        assert login(c, "admin").status_code == 303
        cookie = c.cookies["medsynth_session"]
        assert len(cookie) == 43 and "." not in cookie  # no signed payload, just the id
