"""Password strength by zxcvbn with the user name as context, through the API and the service."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from app.services.accounts.passwords import weakness
from tests.app.sessions import browser, login, page_token
from tests.conftest import PASSWORD

ATTACKERS_LIST = [
    "abc123abc123",
    "trustno1trustno1",
    "zaq12wsxcde3",
    "1q2w3e4r5t6y",
    "adminadmin12",
    "reviewer1pass",
]


@pytest.mark.parametrize("password", ATTACKERS_LIST)
def test_the_listed_weak_passwords_are_refused_over_http(admin, password):
    body = {"username": "newuser", "role": "reviewer", "password": password}
    r = admin.post("/api/users", json=body)
    assert r.status_code == 422, r.text
    assert "too easy to guess" in r.json()["detail"]
    assert admin.get("/api/users").text.count("newuser") == 0


def test_the_user_name_is_context():
    assert weakness("aiepoissac-Lyra", "someone") is None
    assert "Reversed words" in weakness("aiepoissac-Lyra", "cassiopeia")  # the name, reversed
    assert "must not contain the username" in weakness("xCassiopeia-Lyra", "cassiopeia")


@pytest.mark.parametrize(
    ("password", "username"),
    [
        (PASSWORD, "reader1"),  # tests/conftest.py
        ("a-long-password", "rad1"),  # tests/app/test_cli.py
        ("long-enough-pw", "radiologist"),  # tests/app/test_auth.py
        ("pw-long-enough", "nurse"),
        ("a-brand-new-passphrase", "reader1"),  # tests/app/test_attack_sessions.py
        ("portal-venous-W200-L90", "radiologist"),  # bench/viewer_step.py
    ],
)
def test_the_projects_own_passwords_still_pass(password, username):
    assert weakness(password, username) is None


def test_a_changed_password_is_judged_too(live_app):
    with browser(live_app.url, "reader1") as c:
        token = page_token(c.get("/account").text)
        form = {"current": PASSWORD, "new": "1q2w3e4r5t6y", "confirm": "1q2w3e4r5t6y"}
        form["csrf_token"] = token
        r = c.post("/account/password", data=form)
        assert r.status_code == 422 and "too easy to guess" in r.text
    with browser(live_app.url) as c:
        assert login(c, "reader1").status_code == 303


def test_parallel_checks_keep_their_own_user_names():
    """zxcvbn keeps user inputs in a module global: the checks must not see each other's."""
    pairs = [("aiepoissac-Lyra", "someone" if i % 2 else "cassiopeia") for i in range(60)]
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda p: weakness(*p), pairs))
    assert [r is None for r in results] == [i % 2 == 1 for i in range(60)]
