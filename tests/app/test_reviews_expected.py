"""A decision names the slice and what its author saw there (issue 22 item 1): a stale one is
a 409 and stores nothing, a repeated key stores no second row, `expected` stays optional."""

from __future__ import annotations

from sqlalchemy import func, select

from app.db import session_scope
from app.models import Review
from app.services.curation.demo import create_demo

URL = "/api/volumes/1/slices/5/review"


def _rows(live_app) -> int:
    with session_scope(live_app.sessions) as s:
        return s.scalar(select(func.count()).select_from(Review))


def test_a_stale_decision_is_refused_with_409_and_stores_nothing(live_app, reader):
    with session_scope(live_app.sessions) as s:
        create_demo(s, live_app.settings, volumes=1, seed=0, size=64)
    r = reader.put(URL, json={"decision": "approved", "expected": "none"})
    assert r.status_code == 200 and r.json()["created"] is True, r.text
    # the 'r' meant for the next slice arrives for slice 5, whose screen still showed nothing
    r = reader.put(URL, json={"decision": "rejected", "expected": "none"})
    assert r.status_code == 409, r.text
    detail = r.json()["detail"]
    assert "slice 6" in detail and "'approved'" in detail and "nothing was stored" in detail
    assert _rows(live_app) == 1
    assert reader.get("/api/volumes/1/slices/5/reviews").json()[0]["decision"] == "approved"
    # what the screen showed was right: a change of mind is stored
    r = reader.put(URL, json={"decision": "rejected", "expected": "approved"})
    assert r.status_code == 200 and r.json()["decision"] == "rejected"
    assert _rows(live_app) == 2
    # another reviewer's decision is not what `expected` is about: theirs is their own
    with live_app.client("reader2") as other:
        r = other.put(URL, json={"decision": "approved", "expected": "none"})
        assert r.status_code == 200, r.text


def test_a_repeated_key_adds_no_row(live_app, reader):
    with session_scope(live_app.sessions) as s:
        create_demo(s, live_app.settings, volumes=1, seed=0, size=64)
    first = reader.put(URL, json={"decision": "approved", "label": "tumour", "note": "dome"})
    for expected in ("none", "approved", None):  # sent before or after the first came back
        again = reader.put(URL, json={"decision": "approved", "expected": expected})
        assert again.status_code == 200, again.text
        assert again.json()["id"] == first.json()["id"] and again.json()["created"] is False
        assert again.json()["label"] == "tumour" and again.json()["note"] == "dome"
    assert _rows(live_app) == 1
    # a new note or label is new information: a row
    r = reader.put(URL, json={"decision": "approved", "label": "normal"})
    assert r.json()["created"] is True and _rows(live_app) == 2
    # after someone else's decision the same decision is a new row again ("latest counts")
    with live_app.client("reader2") as other:
        other.put(URL, json={"decision": "rejected"})
    r = reader.put(URL, json={"decision": "approved", "label": "normal"})
    assert r.json()["created"] is True and _rows(live_app) == 4


def test_expected_is_optional_and_checked(live_app, reader):
    with session_scope(live_app.sessions) as s:
        create_demo(s, live_app.settings, volumes=1, seed=0, size=64)
    assert reader.put(URL, json={"decision": "approved"}).status_code == 200
    assert reader.put(URL, json={"decision": "rejected"}).status_code == 200  # no check asked
    r = reader.put(URL, json={"decision": "approved", "expected": "maybe"})
    assert r.status_code == 422 and "expected must be" in r.json()["detail"]
    assert _rows(live_app) == 2


def test_the_review_form_sends_expected_too(live_app, reader):
    with session_scope(live_app.sessions) as s:
        create_demo(s, live_app.settings, volumes=1, seed=0, size=64)
    form = "/volumes/1/slices/5/review"
    r = reader.post(form, data={"decision": "approved", "expected": "none"})
    assert r.status_code == 303, r.text
    r = reader.post(form, data={"decision": "rejected", "expected": "none"})
    assert r.status_code == 409 and "nothing was stored" in r.text
    assert _rows(live_app) == 1
