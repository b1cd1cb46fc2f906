"""Attack suite, password guessing, through real HTTP: a back-off per account and per address
(429 + Retry-After), kept in the database, never a permanent lockout."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace

import httpx
import pytest
import uvicorn
from sqlalchemy import select

from app.main import create_app
from app.models import LoginThrottle
from tests.app.sessions import browser, login, page_token
from tests.conftest import PASSWORD, _free_port, _Server


@pytest.fixture
def settings(settings):
    return replace(settings, login_backoff_s=0.2, login_backoff_max_s=1.0)


def test_thirty_wrong_logins_back_off_then_the_right_password_works(live_app):
    statuses, waits = [], []
    with browser(live_app.url) as c:
        for _ in range(30):
            r = login(c, "reader1", password="guess-" + str(len(statuses)))
            statuses.append(r.status_code)
            if r.status_code == 429:
                waits.append(int(r.headers["retry-after"]))
                assert "too many failed logins" in r.text
        assert statuses[:5] == [401] * 5  # a few typos are free
        assert 429 in statuses and set(statuses) <= {401, 429}
        assert max(waits) <= 1  # capped by login_backoff_max_s: never locked out for good
        r = login(c, "reader1")  # the right password, too, waits out the back-off
        if r.status_code == 429:
            time.sleep(int(r.headers["retry-after"]) + 0.1)
            r = login(c, "reader1")
        assert r.status_code == 303
        assert c.get("/api/me").json()["username"] == "reader1"


def test_the_back_off_is_kept_in_the_database(live_app):
    with browser(live_app.url) as c:
        for i in range(6):
            login(c, "reader2", password=f"wrong-{i}")
    with live_app.sessions() as s:
        rows = {r.key: r for r in s.scalars(select(LoginThrottle))}
    assert rows["user:reader2"].failures == 6 and rows["user:reader2"].blocked_until is not None
    assert rows["ip:127.0.0.1"].failures == 6  # the address is counted too


@contextmanager
def _server(settings) -> Iterator[str]:
    """The app on its own port: each call is a fresh process state, like a restart."""
    port = _free_port()
    config = uvicorn.Config(create_app(settings), host="127.0.0.1", port=port,
                            log_level="warning")  # fmt: skip
    server = _Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def test_a_restarted_server_keeps_the_back_off(live_app):
    slow = replace(live_app.settings, login_backoff_s=30.0, login_backoff_max_s=60.0)
    with _server(slow) as url, browser(url) as c:
        codes = [login(c, "reader2", password=f"wrong-{i}").status_code for i in range(6)]
        assert codes == [401] * 6
    with _server(slow) as url, browser(url) as c:  # "restarted"
        r = login(c, "reader2")
        assert r.status_code == 429 and 20 <= int(r.headers["retry-after"]) <= 30


def test_unknown_names_are_throttled_like_real_ones(live_app):
    with browser(live_app.url) as c:
        codes = [login(c, "no-such-user", password=f"pw-{i}").status_code for i in range(7)]
    assert codes[:5] == [401] * 5 and codes[-1] == 429


def test_the_token_form_is_throttled_like_a_login(live_app):
    with browser(live_app.url, "admin") as c:
        token = page_token(c.get("/account").text)
        codes = []
        for i in range(7):
            form = {"name": "t", "password": f"guess-{i}", "csrf_token": token}
            codes.append(c.post("/account/tokens", data=form).status_code)
        assert codes[:5] == [403] * 5 and codes[-1] == 429


def test_a_stale_or_missing_form_token_is_refused_without_counting(live_app):
    with httpx.Client(base_url=live_app.url) as c:
        data = {"username": "reader1", "password": PASSWORD, "csrf_token": "forged"}
        for _ in range(10):
            assert c.post("/login", data=data).status_code == 403
    with browser(live_app.url) as c:
        assert login(c, "reader1").status_code == 303


def _device(url: str, agent: str) -> httpx.Client:
    return httpx.Client(base_url=url, follow_redirects=False, timeout=60,
                        headers={"User-Agent": agent})  # fmt: skip


def test_a_known_device_logs_in_through_a_strangers_back_off(live_app):
    slow = replace(live_app.settings, login_backoff_s=60.0, login_backoff_max_s=600.0)
    with _server(slow) as url:
        with _device(url, "owner-laptop") as owner:
            assert login(owner, "reader1").status_code == 303  # history: this browser, address
            owner.post("/logout", headers={"X-CSRF-Token": page_token(owner.get("/").text)})
        with _device(url, "attacker") as attacker:
            codes = [login(attacker, "reader1", f"guess-{i}").status_code for i in range(8)]
            assert codes[:5] == [401] * 5 and codes[-1] == 429
            assert login(attacker, "reader1").status_code == 429  # the right answer, unknown device
        with _device(url, "owner-laptop") as owner:
            r = login(owner, "reader1")
            assert r.status_code == 303, r.text
            assert owner.get("/api/me").json()["username"] == "reader1"


def test_a_known_device_still_backs_off_its_own_guesses(live_app):
    slow = replace(live_app.settings, login_backoff_s=60.0, login_backoff_max_s=600.0)
    with _server(slow) as url:
        with _device(url, "owner-laptop") as owner:
            assert login(owner, "reader2").status_code == 303
        with _device(url, "owner-laptop") as owner:  # a fresh cookie jar, the same browser
            codes = [login(owner, "reader2", f"guess-{i}").status_code for i in range(7)]
            assert codes[:5] == [401] * 5 and codes[-1] == 429
            assert login(owner, "reader2").status_code == 429  # its guesses are throttled too


def test_spraying_unknown_names_does_not_lock_out_a_known_colleague(live_app):
    slow = replace(live_app.settings, login_backoff_s=60.0, login_backoff_max_s=600.0)
    with _server(slow) as url:
        with _device(url, "colleague-pc") as colleague:
            assert login(colleague, "reader2").status_code == 303
        with _device(url, "sprayer") as sprayer:  # same address: one NAT
            codes = [login(sprayer, f"nobody{i}", "x-guess-1").status_code for i in range(25)]
            assert codes[-1] == 429  # the address backs off after login_free_attempts_ip
        with _device(url, "colleague-pc") as colleague:
            assert login(colleague, "reader2").status_code == 303
