"""Attack suite, bad input, through real HTTP: every route answers a 4xx, never a 500, for ids
beyond 64 bits, lone surrogates, and a full disk while writing."""

from __future__ import annotations

import errno
import re
import sqlite3

import pytest
from fastapi.routing import APIRoute
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session as OrmSession

from app.db import session_scope
from app.main import create_app
from app.models import Review
from tests.app.curation_data import curated
from tests.app.sessions import browser, page_token
from tests.conftest import PASSWORD

BIG = 2**63
INT_PARAM = re.compile(r"\{([^}:]+)\}")


def _walk(routes, prefix: str = ""):
    """(full path, route) for every route, through included routers."""
    for route in routes:
        sub = getattr(route, "original_router", None)
        if sub is not None:
            ctx = getattr(route, "include_context", None)
            yield from _walk(sub.routes, prefix + getattr(ctx, "prefix", ""))
        else:
            yield prefix + getattr(route, "path", ""), route


def _id_routes(settings) -> list[tuple[str, str, list[str]]]:
    """(method, path, int path parameters) of every route with an integer path parameter."""
    out = []
    for path, route in _walk(create_app(settings).routes):
        if not isinstance(route, APIRoute):
            continue
        ints = [p.name for p in route.dependant.path_params if p.field_info.annotation is int]
        for method in sorted(route.methods - {"HEAD"}) if ints else ():
            out.append((method, path, ints))
    return out


def _fill(path: str, values: dict[str, object]) -> str:
    return INT_PARAM.sub(lambda m: str(values.get(m.group(1), 1)), path)


def test_an_id_of_2_to_the_63_is_a_4xx_on_every_route(live_app, admin):
    routes = _id_routes(live_app.settings)
    assert len(routes) >= 30
    for method, path, ints in routes:
        for value in (BIG, -BIG - 1):
            for name in ints:
                url = _fill(path, {name: value})
                r = admin.request(method, url)
                # a 4xx (or a redirect that touches nothing, e.g. a panel back to its page)
                assert 300 <= r.status_code < 500, (method, url, r.status_code, r.text[:200])
                if path.startswith("/api"):
                    assert r.json()["detail"], (method, url)


@pytest.mark.parametrize(
    "url,body",
    [
        ("/api/datasets", {"name": "x", "resolution": 64, "window": "liver", "bit_depth": 8,
                           "volume_ids": [BIG]}),
        ("/api/jobs", {"dataset_id": BIG, "resolution": 16, "kimg": 1}),
        ("/api/studies", {"snapshot_id": BIG, "dataset_id": BIG, "n_real": 2, "n_fake": 2,
                          "readers": ["reader1"]}),
        ("/api/me/tokens", {"name": "x", "password": BIG}),
    ],
)  # fmt: skip
def test_a_body_id_of_2_to_the_63_is_a_4xx(admin, url, body):
    r = admin.post(url, json=body)
    assert 400 <= r.status_code < 500 and r.json()["detail"], r.text


def test_an_out_of_range_query_or_form_number_is_a_4xx(live_app):
    with browser(live_app.url, "admin") as c:
        token = page_token(c.get("/account").text)
        r = c.post(f"/users/{-BIG - 1}/deactivate", data={"csrf_token": token})
        assert r.status_code == 422


def test_a_lone_surrogate_in_json_is_422(live_app, reader):
    raw = b'{"name": "bad \\ud800 name", "password": "%s"}' % PASSWORD.encode()
    r = reader.post("/api/me/tokens", content=raw, headers={"content-type": "application/json"})
    assert r.status_code == 422 and "surrogate" in r.json()["detail"]
    pair = b'{"name": "ok \\ud83d\\ude00", "password": "%s"}' % PASSWORD.encode()
    r = reader.post("/api/me/tokens", content=pair, headers={"content-type": "application/json"})
    assert r.status_code == 201 and r.json()["name"] == "ok \U0001f600"  # a real pair is fine


def test_a_lone_surrogate_in_a_review_note_is_422(live_app, reader):
    with session_scope(live_app.sessions) as s:
        volume_id = curated(s, live_app.settings).id
    raw = b'{"decision": "approved", "label": "normal", "note": "\\udfff"}'
    r = reader.put(
        f"/api/volumes/{volume_id}/slices/0/review",
        content=raw,
        headers={"content-type": "application/json"},
    )
    assert r.status_code == 422, r.text


def test_a_surrogate_in_form_text_is_422(live_app):
    with browser(live_app.url, "reader1") as c:
        token = page_token(c.get("/account").text)
        body = f"name=%ED%A0%80&password={PASSWORD}&csrf_token={token}"
        r = c.post(
            "/account/tokens",
            content=body,
            headers={"content-type": "application/x-www-form-urlencoded"},
        )
        assert r.status_code == 422 and "UTF-8" in r.text


def test_a_full_disk_during_a_review_is_507(live_app, reader, monkeypatch):
    with session_scope(live_app.sessions) as s:
        volume_id = curated(s, live_app.settings).id
    real_commit = OrmSession.commit

    def full_disk_commit(self):
        if any(isinstance(o, Review) for o in self.new):
            full = sqlite3.OperationalError("database or disk is full")
            raise OperationalError("INSERT INTO reviews ...", {}, full)
        return real_commit(self)

    monkeypatch.setattr(OrmSession, "commit", full_disk_commit)
    body = {"decision": "approved", "label": "normal", "note": ""}
    r = reader.put(f"/api/volumes/{volume_id}/slices/0/review", json=body)
    assert r.status_code == 507 and "disk is full" in r.json()["detail"]


def test_a_full_disk_during_a_freeze_is_507(live_app, reader, monkeypatch):
    from app.services.curation import datasets

    with session_scope(live_app.sessions) as s:
        curated(s, live_app.settings)

    def no_space(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(datasets, "write_zip", no_space)
    body = {"name": "full", "resolution": 64, "window": "liver", "bit_depth": 8}
    r = reader.post("/api/datasets", json=body)
    assert r.status_code == 507, r.text
    assert str(live_app.settings.data_dir) not in r.text  # no server paths in the message
