"""A finished study must not tell the answers of an overlapping unfinished one (issue 21 item 1):
while a reader has an unfinished study, the results and labelled trial images of every study
that shares its real or training images, or its generator's lineage, are refused to them."""

from __future__ import annotations

import pytest

from app.db import session_scope
from app.models import Job, Snapshot
from tests.app.study_setup import (  # noqa: F401  (tiny_run_fixture provides tiny_run)
    add_world,
    answer_all,
    create_study,
    tiny_run_fixture,
)

pytestmark = pytest.mark.slow  # each study runs `python -m trainer generate`


def _resume(sessions, child_snapshot: int, parent_snapshot: int) -> None:
    """Record that the job of `child_snapshot` was fine-tuned from `parent_snapshot`."""
    with session_scope(sessions) as session:
        job = session.get(Job, session.get(Snapshot, child_snapshot).job_id)
        job.resume_from_snapshot_id = parent_snapshot


def _study(admin, world, name: str) -> dict:
    return create_study(admin, world, n_real=2, n_fake=2, readers=["reader1"], name=name,
                        holdout_dataset_id=world.holdout_id)  # fmt: skip


def test_finished_overlapping_study_hides_its_truth_while_the_next_is_unfinished(
    live_app, admin, tiny_run
):
    base = live_app.settings.data_dir
    worlds = {k: add_world(live_app.sessions, base / k, tiny_run, other_patients=True)
              for k in ("shared", "unrelated", "child", "parent")}  # fmt: skip
    _resume(live_app.sessions, worlds["child"].snapshot_id, worlds["shared"].snapshot_id)
    _resume(live_app.sessions, worlds["shared"].snapshot_id, worlds["parent"].snapshot_id)
    done = {k: _study(admin, w, f"study {k}") for k, w in worlds.items()}
    with live_app.client("reader1") as r1:
        tokens = {key: answer_all(r1, study["id"]) for key, study in done.items()}
        for study in done.values():
            assert r1.get(f"/api/studies/{study['id']}/results").status_code == 200
        # study B reuses the held-out reals and the generator of "shared"
        b = _study(admin, worlds["shared"], "study B")
        for key in ("shared", "child", "parent"):
            sid = done[key]["id"]
            r = r1.get(f"/api/studies/{sid}/results")
            assert r.status_code == 403, (key, r.text)
            detail = r.json()["detail"]
            assert "Hidden while you read study “study B”" in detail and "answered 0 of 4" in detail
            page = r1.get(f"/studies/{sid}/results")
            assert page.status_code == 403 and "would unblind you" in page.text
            assert "truth" not in page.text
            for token in tokens[key]:
                assert r1.get(f"/study-images/{token}").status_code == 403, key
            assert r1.get(f"/api/studies/{sid}/answers.csv").status_code == 403  # admins only
        other = done["unrelated"]["id"]  # no shared image, no shared generator
        assert r1.get(f"/api/studies/{other}/results").status_code == 200
        assert r1.get(f"/study-images/{tokens['unrelated'][0]}").status_code == 200
        nxt = r1.get(f"/api/studies/{b['id']}/next").json()  # B itself reads as before
        assert r1.get(nxt["image"]).status_code == 200
        sid = done["shared"]["id"]
        assert admin.get(f"/api/studies/{sid}/results").status_code == 200  # admins see all
        assert "truth" in admin.get(f"/api/studies/{sid}/answers.csv").text
        answer_all(r1, b["id"])
        assert r1.get(f"/api/studies/{sid}/results").status_code == 200  # shown again
        assert r1.get(f"/study-images/{tokens['shared'][0]}").status_code == 200
