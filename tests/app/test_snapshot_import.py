"""An admin uploads a published StyleGAN2-ADA .pkl; the app imports it through the trainer's
command line and offers it as "fine-tune from"; a pickle that would run code is refused."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import pytest

from app.db import session_scope
from app.services.training.job_options import validate_job_options
from app.trainer_client.processes import Devices
from tests.app.job_helpers import make_dataset

FIXTURES = Path(__file__).resolve().parents[3] / "shared" / "fixtures" / "nvlabs"
needs_fixtures = pytest.mark.skipif(
    not (FIXTURES / "gray32.pkl").is_file(), reason="reference checkpoints not present"
)


@needs_fixtures
def test_an_imported_checkpoint_can_be_fine_tuned_from(live_app, admin, reader):
    ds = make_dataset(live_app.sessions, live_app.settings, res=32)
    files = {"file": ("gray32.pkl", (FIXTURES / "gray32.pkl").read_bytes())}
    assert reader.post("/api/snapshots/import", files=files,
                       data={"dataset_id": str(ds)}).status_code == 403  # fmt: skip
    r = admin.post("/api/snapshots/import", files=files, data={"dataset_id": str(ds)})
    assert r.status_code == 201, r.text
    out = r.json()
    assert out["resolution"] == 32 and out["c_dim"] == 0
    sid = out["snapshot"]["id"]
    job = admin.get(f"/api/jobs/{out['snapshot']['job_id']}").json()
    assert job["state"] == "imported" and job["options"]["imported_from"] == "gray32.pkl"
    assert admin.post(f"/api/jobs/{job['id']}/resume").status_code == 409
    page = admin.get("/jobs").text
    assert f'<option value="{sid}"' in page and "Import a published checkpoint" in page
    with session_scope(live_app.sessions) as session:
        _, opts = validate_job_options(session, {"dataset_id": ds, "resume_from": sid}, Devices())
    assert (opts["cbase"], opts["cmax"], opts["zdim"]) == (1024, 64, 64)  # from the checkpoint


def test_a_pickle_that_would_run_code_is_refused_and_nothing_runs(live_app, admin, tmp_path):
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    ds = make_dataset(live_app.sessions, live_app.settings)
    files = {"file": ("model.pkl", pickle.dumps(Evil()))}
    r = admin.post("/api/snapshots/import", files=files, data={"dataset_id": str(ds)})
    assert r.status_code == 422, r.text
    detail = r.json()["detail"]
    assert "nothing in it was run" in detail and "system" in detail
    assert "--" not in detail and str(live_app.settings.runs_dir) not in detail
    assert not marker.exists()
    assert not [p for p in live_app.settings.runs_dir.glob("import-*")]
    assert admin.post("/api/snapshots/import", files={"file": ("x.txt", b"hello")},
                      data={"dataset_id": str(ds)}).status_code == 422  # fmt: skip


def test_parallel_imports_by_one_user_take_one_place_in_the_bounded_queue(live_app, admin):
    """Each import starts a trainer process: one user holds one place; the rest hear 429."""
    from concurrent.futures import ThreadPoolExecutor

    ds = make_dataset(live_app.sessions, live_app.settings, res=32)
    body = (FIXTURES / "gray32.pkl").read_bytes()

    def post(_):
        with live_app.client("admin") as c:
            files = {"file": ("gray32.pkl", body)}
            return c.post("/api/snapshots/import", files=files, data={"dataset_id": str(ds)})

    with ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(post, range(4)))
    codes = sorted(r.status_code for r in answers)
    assert codes[0] == 201 and set(codes) <= {201, 429}, [r.text for r in answers]
    assert codes.count(429) >= 1  # not all four ran at once
    refused = next(r for r in answers if r.status_code == 429)
    assert "checkpoint import" in refused.json()["detail"] and refused.headers.get("retry-after")
