"""Reader studies over real HTTP: creation with the real trainer, reading, faults, results."""

from __future__ import annotations

import csv
import io
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image
from sqlalchemy import func, select

from app.db import session_scope
from app.models import Study, StudyImage, Trial, User
from tests.app.study_setup import (  # noqa: F401  (tiny_run_fixture provides tiny_run)
    ROOT,
    add_world,
    answer_all,
    create_study,
    tiny_run_fixture,
)

pytestmark = pytest.mark.slow  # each study runs `python -m trainer generate`


def _world(live_app, tiny_run, **kw):
    return add_world(live_app.sessions, live_app.settings.data_dir / "fixtures", tiny_run, **kw)


def test_study_is_created_read_to_the_end_and_scored(live_app, admin, tiny_run, tmp_path):
    world = _world(live_app, tiny_run)
    study = create_study(admin, world, n_real=4, n_fake=4)
    sid = study["id"]
    assert study["state"] == "open" and study["n_real"] == 4 and not study["reals_held_out"]
    assert [r["username"] for r in study["readers"]] == ["reader1", "reader2"]

    with session_scope(live_app.sessions) as session:
        row = session.get(Study, sid)
        images = {i.id: (i.synthetic, i.source, i.path) for i in row.images}
        seed = row.seed
    assert sorted(s for s, _, _ in images.values()) == [False] * 4 + [True] * 4
    # The synthetic images are exactly what `python -m trainer generate` makes for the seeds.
    out = tmp_path / "gen"
    cmd = [sys.executable, "-m", "trainer", "generate", "--snapshot", str(tiny_run.snapshot_path),
           "--seeds", f"{seed}-{seed + 3}", "--trunc", "0.7", "--outdir", str(out)]  # fmt: skip
    subprocess.run(cmd, cwd=ROOT, check=True, capture_output=True)
    for synthetic, source, path in images.values():
        if synthetic:
            expected = np.asarray(Image.open(out / f"seed{int(source.split()[1]):04d}.png"))
            shown = np.asarray(Image.open(path))  # the study's one-pixel crop (images.py)
            crops = [expected[y : y + 15, x : x + 15] for y in (0, 1) for x in (0, 1)]
            assert any(np.array_equal(shown, c) for c in crops)

    orders = {}
    for name in ("reader1", "reader2"):
        with live_app.client(name) as c:
            tokens = answer_all(c, sid, rating_for=lambda i: 5 if i % 2 else 1)
            assert len(tokens) == 8
            orders[name] = [c.get(f"/study-images/{t}").content for t in tokens]
            assert c.get(f"/api/studies/{sid}/next").status_code == 204
    assert sorted(orders["reader1"]) == sorted(orders["reader2"])  # the same images ...
    assert orders["reader1"] != orders["reader2"]  # ... in each reader's own order (1 in 40320)

    res = admin.get(f"/api/studies/{sid}/results").json()
    pooled = res["statistics"]["pooled"]
    assert pooled["n"] == 16 and pooled["n_synthetic"] == 8
    assert set(res["statistics"]["readers"]) == {"reader1", "reader2"}
    assert len(res["trials"]) == 16 and {t["truth"] for t in res["trials"]} == {"real", "synthetic"}
    assert all(t["server_ms"] is not None and t["usable"] is True for t in res["trials"])
    assert res["metrics"] is None  # "not computed yet" until the metrics integration

    rows = list(csv.DictReader(io.StringIO(admin.get(f"/api/studies/{sid}/answers.csv").text)))
    assert len(rows) == 16 and {r["reader"] for r in rows} == {"reader1", "reader2"}
    assert admin.get("/api/studies").json()[0]["id"] == sid
    page = admin.get(f"/studies/{sid}/results")
    assert page.status_code == 200 and "Detection of synthetic images" in page.text
    assert '<svg class="roc"' in page.text and "Readers told synthetic from real" in page.text
    assert "By class" in page.text and "By source" in page.text and "unsure" in page.text
    assert res["verdict"] == res["statistics"]["verdict"] and res["verdict"]


def _answer(c, sid, token, rating=3):
    return c.post(f"/api/studies/{sid}/answers", json={"trial": token, "rating": rating})


def _trial(live_app, token):
    with session_scope(live_app.sessions) as session:
        t = session.scalar(select(Trial).where(Trial.token == token))
        return (t.rating, t.answered_at, t.comment)


def test_bad_answers_are_refused_and_change_nothing(live_app, admin, tiny_run):
    sid = create_study(admin, _world(live_app, tiny_run))["id"]
    with live_app.client("reader1") as r1, live_app.client("reader2") as r2:
        token = r1.get(f"/api/studies/{sid}/next").json()["trial"]
        before = _trial(live_app, token)
        r = _answer(r2, sid, token)  # not yours
        assert r.status_code == 404 and "among your trials" in r.json()["detail"]
        for bad in (0, 6):
            assert _answer(r1, sid, token, bad).status_code == 422
        assert _trial(live_app, token) == before
        assert (
            admin.post(
                f"/api/studies/{sid}/answers", json={"trial": token, "rating": 2}
            ).status_code
            == 404
        )
        assert _answer(r1, sid, token, 2).status_code == 200
        after = _trial(live_app, token)
        r = _answer(r1, sid, token, 5)  # twice
        assert r.status_code == 409 and "already answered" in r.json()["detail"]
        assert _trial(live_app, token) == after and after[0] == 2

        token2 = r1.get(f"/api/studies/{sid}/next").json()["trial"]
        assert admin.post(f"/api/studies/{sid}/close").json()["state"] == "closed"
        r = _answer(r1, sid, token2)  # after the study is closed
        assert r.status_code == 409 and "closed" in r.json()["detail"]
        assert _trial(live_app, token2)[0] is None
        assert r1.get(f"/api/studies/{sid}/next").status_code == 409
        assert admin.post(f"/api/studies/{sid}/close").status_code == 409


def test_invalid_studies_are_refused_before_anything_is_written(
    live_app, admin, tiny_run, tmp_path
):
    world = _world(live_app, tiny_run)
    mismatch = _world(live_app, tiny_run, job_resolution=32)
    base = {"snapshot_id": world.snapshot_id, "dataset_id": world.dataset_id, "n_real": 3,
            "n_fake": 3, "readers": ["reader1"]}  # fmt: skip
    cases = [
        ({"snapshot_id": mismatch.snapshot_id, "dataset_id": mismatch.dataset_id}, "32x32"),
        ({"n_real": 17}, "only 16"),
        ({"readers": []}, "at least one reader"),
        ({"readers": ["admin"]}, "must be reviewers"),
        ({"readers": ["nobody"]}, "no user"),
        ({"dataset_id": mismatch.dataset_id}, "was trained on dataset"),
        ({"truncation": 5}, "truncation"),
        ({"n_fake": 0}, "n_fake"),
    ]
    for change, words in cases:
        r = admin.post("/api/studies", json={**base, **change})
        assert 400 <= r.status_code < 500 and words in r.json()["detail"], (change, r.text)
    with live_app.client("reader1") as reader:
        assert reader.post("/api/studies", json=base).status_code == 403
    with session_scope(live_app.sessions) as session:
        assert session.scalar(select(func.count(Study.id))) == 0
    studies = live_app.settings.data_dir / "studies"
    assert not studies.exists() or not any(studies.iterdir())


def test_a_removed_or_deactivated_reader_keeps_answers_but_cannot_go_on(live_app, admin, tiny_run):
    sid = create_study(admin, _world(live_app, tiny_run))["id"]
    with live_app.client("reader1") as r1, live_app.client("reader2") as r2:
        for c in (r1, r1, r2):
            token = c.get(f"/api/studies/{sid}/next").json()["trial"]
            assert _answer(c, sid, token, 4).status_code == 200
        pending = r1.get(f"/api/studies/{sid}/next").json()["trial"]
        summary = admin.post(f"/api/studies/{sid}/readers/reader1/remove").json()
        assert [r["removed"] for r in summary["readers"]] == [True, False]
        r = _answer(r1, sid, pending)
        assert r.status_code == 403 and "removed" in r.json()["detail"]
        assert r1.get(f"/api/studies/{sid}/next").status_code == 403
        assert r1.get(f"/study-images/{pending}").status_code == 404
        assert r1.get("/api/studies").json() == []

        with session_scope(live_app.sessions) as session:
            uid = session.scalar(select(User.id).where(User.username == "reader2"))
        assert admin.post(f"/api/users/{uid}/deactivate").status_code == 200
        assert r2.get(f"/api/studies/{sid}/next").status_code == 401
    res = admin.get(f"/api/studies/{sid}/results").json()
    assert res["statistics"]["pooled"]["n"] == 3
    assert {k: v["n"] for k, v in res["statistics"]["readers"].items()} == {
        "reader1": 2, "reader2": 1}  # fmt: skip
    assert _trial(live_app, pending)[0] is None


def test_an_overlapping_version_is_not_accepted_as_held_out(live_app, admin, tiny_run):
    world = _world(live_app, tiny_run, holdout=True)  # other slices of the training patient
    r = admin.post("/api/studies", json={
        "snapshot_id": world.snapshot_id, "dataset_id": world.dataset_id, "n_real": 2,
        "n_fake": 2, "readers": ["reader1"], "holdout_dataset_id": world.holdout_id})  # fmt: skip
    assert r.status_code == 409 and "not held out" in r.json()["detail"]
    study = create_study(admin, world, n_real=2, n_fake=2)  # no disjoint version: training
    assert not study["reals_held_out"] and study["real_dataset_id"] == world.dataset_id


def test_real_images_come_from_other_patients_by_default(live_app, admin, tiny_run):
    world = _world(live_app, tiny_run, other_patients=True)
    r = admin.post("/api/studies", json={
        "snapshot_id": world.snapshot_id, "dataset_id": world.dataset_id, "n_real": 17,
        "n_fake": 2, "readers": ["reader1"]})  # fmt: skip
    assert r.status_code == 422 and "only 16 held-out images" in r.json()["detail"]
    study = create_study(admin, world, n_real=16, n_fake=2)  # holdout_dataset_id left out
    assert study["reals_held_out"] and study["real_dataset_id"] == world.holdout_id
    with session_scope(live_app.sessions) as session:
        reals = session.scalars(
            select(StudyImage).where(StudyImage.study_id == study["id"], ~StudyImage.synthetic)
        ).all()
        assert sorted(i.source for i in reals) == [f"img{i:08d}.png" for i in range(16)]
        assert all(i.held_out for i in reals)
    knowingly = create_study(admin, world, n_real=2, n_fake=2, holdout_dataset_id=world.dataset_id)
    assert not knowingly["reals_held_out"]


def test_readers_see_results_only_after_finishing_and_only_their_own(live_app, admin, tiny_run):
    sid = create_study(admin, _world(live_app, tiny_run))["id"]
    with live_app.client("reader1") as r1, live_app.client("reader2") as r2:
        assert r1.get(f"/api/studies/{sid}/results").status_code == 403
        answer_all(r1, sid)
        token2 = r2.get(f"/api/studies/{sid}/next").json()["trial"]
        _answer(r2, sid, token2, 5)
        res = r1.get(f"/api/studies/{sid}/results")
        assert res.status_code == 200
        body = res.json()
        assert set(body["statistics"]["readers"]) == {"reader1"}
        assert body["statistics"]["pooled"]["n"] == 7  # pooled over everyone
        assert {t["reader"] for t in body["trials"]} == {"reader1"} and len(body["trials"]) == 6
        assert body["metrics"] is None and "readers" not in body
        assert all(t["image"].startswith("/study-images/") for t in body["trials"])
        assert r1.get(body["trials"][0]["image"]).status_code == 200
        assert r1.get(f"/studies/{sid}/results").status_code == 200
        assert r1.get(f"/api/studies/{sid}/answers.csv").status_code == 403
        assert r2.get(f"/api/studies/{sid}/results").status_code == 403
        assert r2.get(f"/study-images/{token2}").status_code == 200
        own = {t["image"] for t in body["trials"]}  # reader1's image URLs
        assert len(own) == 6 and all(r2.get(url).status_code == 404 for url in own)
