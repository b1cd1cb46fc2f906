"""Reviews: append-only rows, the latest decision counts, progress, concurrency over HTTP."""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import func, select

from app.db import session_scope
from app.errors import InvalidInput, NotFound
from app.models import Review
from app.services.accounts.users import create_user, get_user
from app.services.curation.demo import create_demo
from app.services.curation.reviews import (
    add_review,
    approved_reviews,
    history,
    latest_reviews,
    progress,
)
from app.services.curation.volumes import get_volume
from tests.conftest import PASSWORD


@pytest.fixture
def world(settings, db):
    """Two 64×64 demo volumes (the first with tumours, the second without) and two reviewers."""
    with session_scope(db) as s:
        create_user(s, "ann", "reviewer", PASSWORD)
        create_user(s, "bob", "reviewer", PASSWORD)
        create_demo(s, settings, volumes=2, seed=0, size=64)
    return db


def _users(s):
    return get_user(s, "ann"), get_user(s, "bob")


def test_a_change_of_mind_adds_a_row_and_the_latest_counts(world):
    with session_scope(world) as s:
        ann, bob = _users(s)
        v1, v2 = get_volume(s, 1), get_volume(s, 2)
        add_review(s, v1, 5, ann, "approved", note="clear liver")
        add_review(s, v1, 5, bob, "rejected", note="motion")
        add_review(s, v1, 5, ann, "approved")
        add_review(s, v1, 2, bob, "approved", "normal")
        add_review(s, v2, 0, ann, "approved")
        add_review(s, v1, 3, ann, "approved")
        add_review(s, v1, 3, ann, "rejected")
    with session_scope(world) as s:
        v1 = get_volume(s, 1)
        assert s.scalar(select(func.count()).select_from(Review)) == 7
        rows = history(s, 1, 5)
        assert [(r.user.username, r.decision) for r in rows] == [
            ("ann", "approved"),
            ("bob", "rejected"),
            ("ann", "approved"),
        ]
        assert rows[1].note == "motion"
        latest = latest_reviews(s)
        assert latest[(1, 5)].id == rows[0].id and latest[(1, 3)].decision == "rejected"
        assert set(latest_reviews(s, 2)) == {(2, 0)}
        assert [(r.volume_id, r.slice_index) for r in approved_reviews(s)] == [
            (1, 2),
            (1, 5),
            (2, 0),
        ]
        assert progress(s, v1) == {"approved": 2, "rejected": 1, "unreviewed": 59, "total": 62}


def test_label_defaults_from_the_mask(world):
    with session_scope(world) as s:
        ann, _ = _users(s)
        v1 = get_volume(s, 1)
        tumour = next(sl.index for sl in v1.slices if sl.tumour_pixels)
        normal = next(sl.index for sl in v1.slices if sl.liver_pixels and not sl.tumour_pixels)
        assert add_review(s, v1, tumour, ann, "approved").label == "tumour"
        assert add_review(s, v1, normal, ann, "approved").label == "normal"
        assert add_review(s, v1, tumour, ann, "approved", "normal").label == "normal"


@pytest.mark.parametrize(
    "index, decision, label, note, error, words",
    [
        (
            62,
            "approved",
            None,
            "",
            NotFound,
            "slice 62 does not exist: volume 1 has slices 0 to 61",
        ),
        (-1, "approved", None, "", NotFound, "slice -1 does not exist"),
        (3, "maybe", None, "", InvalidInput, "decision must be 'approved' or 'rejected'"),
        (3, "approved", "cyst", "", InvalidInput, "label must be 'normal' or 'tumour'"),
        (3, "approved", None, "x" * 2001, InvalidInput, "note is too long"),
    ],
)
def test_bad_reviews_are_refused_and_add_nothing(world, index, decision, label, note, error, words):
    with session_scope(world) as s:
        with pytest.raises(error, match=words):
            add_review(s, get_volume(s, 1), index, _users(s)[0], decision, label, note)
        assert s.scalar(select(func.count()).select_from(Review)) == 0


def test_review_api_records_who_and_returns_progress(live_app, reader):
    with session_scope(live_app.sessions) as s:
        create_demo(s, live_app.settings, volumes=1, seed=0, size=64)
    r = reader.put("/api/volumes/1/slices/30/review", json={"decision": "approved", "note": "ok"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["user"] == "reader1" and body["decision"] == "approved" and body["note"] == "ok"
    assert body["label"] in ("normal", "tumour") and body["created_at"].endswith("Z")
    assert body["progress"] == {"approved": 1, "rejected": 0, "unreviewed": 61, "total": 62}
    r = reader.put(
        "/api/volumes/1/slices/30/review", json={"decision": "rejected", "label": "normal"}
    )
    assert r.json()["progress"]["rejected"] == 1
    hist = reader.get("/api/volumes/1/slices/30/reviews").json()
    assert [h["decision"] for h in hist] == ["rejected", "approved"]
    assert reader.get("/api/volumes/1").json()["progress"]["rejected"] == 1
    for path, body, status, words in [
        ("/api/volumes/1/slices/62/review", {"decision": "approved"}, 404, "slices 0 to 61"),
        ("/api/volumes/7/slices/0/review", {"decision": "approved"}, 404, "no volume with id 7"),
        ("/api/volumes/1/slices/0/review", {"decision": "yes"}, 422, "decision must be"),
        ("/api/volumes/1/slices/0/review", {"label": "normal"}, 422, "decision"),
    ]:
        r = reader.put(path, json=body)
        assert r.status_code == status and words in r.json()["detail"], (path, r.text)
    assert reader.get("/api/volumes/1/slices/99/reviews").status_code == 404


def test_two_reviewers_approving_at_the_same_moment_both_count(live_app):
    with session_scope(live_app.sessions) as s:
        create_demo(s, live_app.settings, volumes=1, seed=0, size=64)
    barrier = threading.Barrier(4)
    results: list[int] = []

    def approve(user: str) -> None:
        with live_app.client(user) as c:
            for _ in range(3):
                barrier.wait(timeout=10)
                r = c.put("/api/volumes/1/slices/40/review", json={"decision": "approved"})
                results.append(r.status_code)

    threads = [
        threading.Thread(target=approve, args=(u,))
        for u in ("reader1", "reader2", "admin", "reader1")
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert results == [200] * 12
    with live_app.client("admin") as c:
        hist = c.get("/api/volumes/1/slices/40/reviews").json()
        votes = c.get("/api/volumes/1/slices/40/agreement").json()
    # a repeat with nobody in between stores nothing (issue 22), so rows depend on the order
    assert 3 <= len(hist) <= 12 and {h["user"] for h in hist} == {"reader1", "reader2", "admin"}
    assert votes["reviewers"] == 3 and votes["approved"] == 3
