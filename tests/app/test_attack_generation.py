"""Attack suite, resource exhaustion, through real HTTP: image generation on demand goes through
a bounded queue with a per-user limit and a per-request image cap (429 beyond them)."""

from __future__ import annotations

import stat
import textwrap
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

import httpx
import pytest

from app.db import session_scope
from app.models import Job, Snapshot
from tests.app.job_helpers import make_dataset

SLOW_GENERATE_S = 1.5


@pytest.fixture
def settings(settings):
    """A stand-in trainer whose `generate` takes 1.5 s, and small limits."""
    fake = settings.data_dir / "fake-trainer.sh"
    fake.write_text(
        textwrap.dedent(f"""\
        #!/bin/sh
        while [ $# -gt 0 ]; do [ "$1" = "--outdir" ] && out="$2"; shift; done
        mkdir -p "$out" && sleep {SLOW_GENERATE_S} && printf 'png' > "$out/seed0000.png"
        """)
    )
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    return replace(
        settings,
        python_executable=str(fake),
        generate_max_running=1,
        generate_max_waiting=1,
        generate_per_user=1,
        generate_max_images=8,
    )


@pytest.fixture
def snapshot_id(live_app) -> int:
    dataset_id = make_dataset(live_app.sessions, live_app.settings)
    path = live_app.settings.runs_dir / "1" / "snapshot-000000.pt"
    path.parent.mkdir(parents=True)
    path.write_bytes(b"not a real network; the fake trainer never reads it")
    with session_scope(live_app.sessions) as s:
        job = Job(dataset_id=dataset_id, resolution=16, total_kimg=1.0, state="completed")
        s.add(job)
        s.flush()
        snap = Snapshot(job_id=job.id, kimg=0, path=str(path))
        s.add(snap)
        s.flush()
        return snap.id


def _generate(live_app, user: str, snapshot_id: int, seeds: str = "0-3") -> httpx.Response:
    with live_app.client(user) as c:
        return c.get(f"/api/snapshots/{snapshot_id}/generate.zip", params={"seeds": seeds})


def _parallel(live_app, users: list[str], snapshot_id: int) -> list[httpx.Response]:
    with ThreadPoolExecutor(len(users)) as pool:
        return list(pool.map(lambda u: _generate(live_app, u, snapshot_id), users))


def test_one_generation_at_a_time_per_user(live_app, snapshot_id):
    results = _parallel(live_app, ["reader1"] * 3, snapshot_id)
    codes = sorted(r.status_code for r in results)
    assert codes == [200, 429, 429], [r.text for r in results]
    refused = next(r for r in results if r.status_code == 429)
    assert "per user" in refused.json()["detail"] and int(refused.headers["retry-after"]) > 0
    assert _generate(live_app, "reader1", snapshot_id).status_code == 200  # the place is freed


def test_the_queue_is_bounded_across_users(live_app, snapshot_id):
    results = _parallel(live_app, ["admin", "reader1", "reader2"], snapshot_id)
    codes = sorted(r.status_code for r in results)
    assert codes == [200, 200, 429]  # one runs, one waits, the third is refused at once
    refused = next(r for r in results if r.status_code == 429)
    assert "queue is full" in refused.json()["detail"]


def test_too_many_images_in_one_request_is_refused(live_app, snapshot_id):
    r = _generate(live_app, "reader1", snapshot_id, seeds="0-255")
    assert r.status_code == 429 and "at most 8 per request" in r.json()["detail"]
    with live_app.client("reader1") as c:
        r = c.post(f"/api/snapshots/{snapshot_id}/generate", json={"seeds": "0-99"})
        assert r.status_code == 429
        r = c.get(f"/snapshots/{snapshot_id}/generate", params={"seeds": "0-99"})
        assert r.status_code == 429
