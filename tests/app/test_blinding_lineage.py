"""A fine-tuned copy of a study's generator is hidden like the generator (issue 21 item 2): an
admin fine-tunes the study's snapshot on an unrelated dataset (`resume_from`), and that copy, and
a copy of the copy, are refused to a reader who has not finished the study."""

from __future__ import annotations

import pytest

from tests.app.job_helpers import TINY, kill_trainers, make_dataset, wait_for
from tests.app.study_setup import (  # noqa: F401  (tiny_run_fixture provides tiny_run)
    add_world,
    answer_all,
    create_study,
    tiny_run_fixture,
)

pytestmark = pytest.mark.slow  # real fine-tuning runs of the real trainer

# the study snapshot's network (tests/app/study_setup.py); a fine-tune must match it
NETWORK = {**TINY, "cbase": 64, "cmax": 16, "zdim": 16, "kimg": 0.016}


@pytest.fixture
def no_stray_trainers(settings):
    yield
    kill_trainers(settings.runs_dir)


def _fine_tune(admin, dataset_id: int, parent: int | None) -> dict:
    """A job on `dataset_id` resumed from snapshot `parent`, run to its end."""
    r = admin.post("/api/jobs", json={"dataset_id": dataset_id, **NETWORK, "resume_from": parent})
    assert r.status_code == 201, r.text
    job_id = r.json()["id"]
    done = wait_for(
        lambda: (j := admin.get(f"/api/jobs/{job_id}").json())["state"]
        in ("completed", "failed") and j,
        timeout=600, what=f"fine-tune job {job_id}",  # a loaded machine trains slowly
    )  # fmt: skip
    assert done["state"] == "completed" and done["snapshots"], done
    return done


def _urls(job: dict) -> list[str]:
    """The copy's sample grid, job page, snapshot samples and page, and generated images."""
    s = job["snapshots"][-1]["id"]
    return [f"/api/jobs/{job['id']}/samples/latest.png", f"/jobs/{job['id']}",
            f"/api/snapshots/{s}/samples.png", f"/snapshots/{s}",
            f"/api/snapshots/{s}/generate.zip?seeds=0-1"]  # fmt: skip


def test_fine_tuned_descendants_of_the_study_generator_are_hidden(
    live_app, admin, tiny_run, no_stray_trainers
):
    world = add_world(live_app.sessions, live_app.settings.data_dir / "fx", tiny_run)
    unrelated = make_dataset(live_app.sessions, live_app.settings)  # no shared volume
    child = _fine_tune(admin, unrelated, world.snapshot_id)
    grandchild = _fine_tune(admin, unrelated, child["snapshots"][-1]["id"])
    stranger = _fine_tune(admin, unrelated, None)  # same data, not of the lineage
    with live_app.client("reader1") as r1:
        for url in _urls(child) + _urls(grandchild) + _urls(stranger):
            assert r1.get(url).status_code == 200, url
        study = create_study(admin, world, n_real=2, n_fake=2, readers=["reader1"])
        for url in _urls(child) + _urls(grandchild):
            r = r1.get(url)
            assert r.status_code == 403, (url, r.status_code)
            text = r.json()["detail"] if url.startswith("/api") else r.text
            assert "Hidden while you read study" in text, url
        for url in _urls(stranger):
            assert r1.get(url).status_code == 200, url
        assert admin.get(_urls(grandchild)[-1]).status_code == 200
        answer_all(r1, study["id"])
        assert r1.get(_urls(grandchild)[2]).status_code == 200
