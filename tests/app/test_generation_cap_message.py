"""The generation limit names the cap that applies (64 per request), not an inner 256."""

from __future__ import annotations

from app.db import session_scope
from app.models import Job, Snapshot
from tests.app.job_helpers import make_dataset


def test_too_many_seeds_are_refused_with_the_real_cap(live_app, admin):
    ds = make_dataset(live_app.sessions, live_app.settings)
    with session_scope(live_app.sessions) as s:
        job = Job(dataset_id=ds, state="completed", options={}, run_dir="", resolution=16,
                  total_kimg=1.0, kimg=1.0)  # fmt: skip
        job.snapshots.append(Snapshot(kimg=1, nimg=1000, size_bytes=1, path="/nowhere.pt"))
        s.add(job)
        s.flush()
        sid = job.snapshots[0].id
    cap = live_app.settings.generate_max_images
    for seeds in (f"0-{cap}", "0-299"):  # above the cap, and above the former inner 256
        r = admin.post(f"/api/snapshots/{sid}/generate", json={"seeds": seeds})
        assert r.status_code == 429, r.text
        assert f"at most {cap} per request" in r.json()["detail"] and "256" not in r.text
