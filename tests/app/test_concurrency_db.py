"""Concurrency on whichever database is selected (SQLite by default, PostgreSQL with
MEDSYNTH_TEST_DATABASE=postgresql): reviews, freezes and job state changes under concurrent
requests, and the monitor lease that lets only one of several app instances run the monitor."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
from sqlalchemy import func, select

from app.db import session_scope
from app.models import AuditEvent, Job, Review, Snapshot, Study
from app.services.accounts.users import create_token, create_user
from app.services.curation.demo import create_demo
from app.services.monitor_lease import LeaseHolder
from app.services.training.job_monitor import JobMonitor
from app.trainer_client.processes import Devices
from tests.app.curation_data import curated
from tests.app.job_helpers import make_dataset, wait_for
from tests.conftest import PASSWORD

ROOT = Path(__file__).resolve().parents[2]
REVIEWERS = 8
DECISIONS = 100
SLICES = (30, 31, 32, 33)

# Stands in for `python -m trainer train` (a real process, no torch): records each launch in
# the run folder, then either finishes its kimg at once or trains until SIGTERM, as the mode
# file beside the run folders says. Anything else (device detection) goes to the real Python.
FAKE_TRAINER = """#!/bin/bash
[ "$3" = "train" ] || exec {python} "$@"
prev=""
for a in "$@"; do
  case "$prev" in --outdir) out="$a";; --kimg) kimg="$a";; esac
  prev="$a"
done
echo "$$" >> "$out/launches.log"
if [ "$(cat "$out/../mode")" = "finish" ]; then
  echo "{{\\"kimg\\": $kimg, \\"sec_per_kimg\\": 1}}" >> "$out/stats.jsonl"
  exit 0
fi
trap 'exit 0' TERM
i=0
while true; do
  i=$((i + 1))
  echo "{{\\"kimg\\": 0.00$((i % 9 + 1)), \\"sec_per_kimg\\": 1}}" >> "$out/stats.jsonl"
  sleep 0.05
done
"""


@pytest.fixture
def settings(settings, tmp_path):
    """The shared settings with the fake trainer and room for several jobs at once."""
    fake = tmp_path / "fake-python"
    fake.write_text(FAKE_TRAINER.format(python=sys.executable))
    fake.chmod(0o755)
    (settings.runs_dir / "mode").write_text("finish")
    return dataclasses.replace(settings, python_executable=str(fake), max_concurrent_jobs=4)


def _queued_jobs(db, settings, n: int) -> list[int]:
    ds = make_dataset(db, settings)
    opts = {"data": "/unused.zip", "resolution": 16, "kimg": 0.016, "batch": 4, "gamma": 1.0,
            "aug": "noaug", "mirror": False, "cond": False, "snap": 1, "seed": 0}  # fmt: skip
    ids = []
    with session_scope(db) as session:
        for _ in range(n):
            job = Job(dataset_id=ds, state="queued", options=opts, run_dir="", resolution=16,
                      total_kimg=0.016, device="cpu")  # fmt: skip
            session.add(job)
            session.flush()
            job.run_dir = str(settings.runs_dir / str(job.id))
            Path(job.run_dir).mkdir()
            ids.append(job.id)
    return ids


def _launches(settings, job_id: int) -> int:
    log = settings.runs_dir / str(job_id) / "launches.log"
    return len(log.read_text().split()) if log.exists() else 0


def _in_threads(n: int, work) -> list:
    """Run work(i) in n threads released together; their results (or exceptions)."""
    barrier, out = threading.Barrier(n), [None] * n

    def run(i: int) -> None:
        barrier.wait(timeout=60)
        try:
            out[i] = work(i)
        except Exception as exc:  # noqa: BLE001 - reported by the test
            out[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    return out


def test_eight_reviewers_deciding_the_same_slices_lose_and_duplicate_nothing(live_app):
    with session_scope(live_app.sessions) as s:
        create_demo(s, live_app.settings, volumes=1, seed=0, size=64)
        for i in range(REVIEWERS):
            user = create_user(s, f"rev{i}", "reviewer", PASSWORD)
            live_app.tokens[f"rev{i}"] = create_token(s, user)

    def decide(i: int) -> list[int]:
        codes = []
        with live_app.client(f"rev{i}") as c:
            for n in range(DECISIONS):
                index = SLICES[n % len(SLICES)]
                body = {"decision": ("approved", "rejected")[n // len(SLICES) % 2],
                        "note": f"rev{i}-{n}"}  # fmt: skip
                r = c.put(f"/api/volumes/1/slices/{index}/review", json=body)
                codes.append(r.status_code)
        return codes

    results = _in_threads(REVIEWERS, decide)
    assert all(r == [200] * DECISIONS for r in results), results
    with session_scope(live_app.sessions) as s:
        notes = Counter(s.scalars(select(Review.note)))
    sent = {f"rev{i}-{n}" for i in range(REVIEWERS) for n in range(DECISIONS)}
    assert set(notes) == sent  # nothing lost
    assert max(notes.values()) == 1 and sum(notes.values()) == len(sent)  # nothing twice


def test_two_admins_freezing_at_once_get_two_versions_or_a_clear_conflict(live_app):
    with session_scope(live_app.sessions) as s:
        curated(s, live_app.settings)
        live_app.tokens["admin2"] = create_token(s, create_user(s, "admin2", "admin", PASSWORD))
    freeze = {"name": "liver-64", "resolution": 64, "window": "liver", "bit_depth": 8}

    def post(i: int):
        with live_app.client(("admin", "admin2")[i]) as c:
            return c.post("/api/datasets", json=freeze)

    answers = _in_threads(2, post)
    codes = sorted(r.status_code for r in answers)
    assert codes in ([201, 201], [201, 409]), [r.text for r in answers]
    made = [r.json()["id"] for r in answers if r.status_code == 201]
    assert len(set(made)) == len(made)
    for r in answers:
        if r.status_code == 409:
            assert r.json()["detail"]  # a message, not a traceback
    with session_scope(live_app.sessions) as s:
        frozen = s.scalar(select(func.count()).where(AuditEvent.action == "dataset.freeze"))
    assert frozen == len(made)


def _open_studies(db, settings, n: int) -> list[int]:
    """Open studies (rows only: closing one touches no image)."""
    ds = make_dataset(db, settings)
    with session_scope(db) as s:
        job = Job(dataset_id=ds, state="completed", options={}, run_dir="r", resolution=16,
                  total_kimg=1.0, device="cpu")  # fmt: skip
        job.snapshots.append(Snapshot(kimg=1, nimg=1000, path="p", size_bytes=1))
        s.add(job)
        s.flush()
        studies = [Study(name=f"s{i}", snapshot_id=job.snapshots[0].id, dataset_id=ds,
                         real_dataset_id=ds, resolution=16, n_real=1, n_fake=1, seed=0)
                   for i in range(n)]  # fmt: skip
        s.add_all(studies)
        s.flush()
        return [st.id for st in studies]


def test_two_admins_closing_a_study_at_once_close_it_once(live_app, settings):
    with session_scope(live_app.sessions) as s:
        live_app.tokens["admin2"] = create_token(s, create_user(s, "admin2", "admin", PASSWORD))
    for study_id in _open_studies(live_app.sessions, settings, 5):  # a race: tried 5 times

        def close(i: int, study_id=study_id):
            with live_app.client(("admin", "admin2")[i]) as c:
                return c.post(f"/api/studies/{study_id}/close")

        answers = _in_threads(2, close)
        assert sorted(r.status_code for r in answers) == [200, 409], [r.text for r in answers]
        with session_scope(live_app.sessions) as s:
            where = (AuditEvent.action == "study.close", AuditEvent.target == f"study:{study_id}")
            closes = s.scalar(select(func.count()).where(*where))
        assert closes == 1


def test_concurrent_cancels_and_resumes_change_a_followed_job_once(live_app, settings):
    (settings.runs_dir / "mode").write_text("run")
    (job_id,) = _queued_jobs(live_app.sessions, settings, 1)
    with live_app.client("admin") as admin:

        def live_app_job() -> dict:
            return admin.get(f"/api/jobs/{job_id}").json()

        wait_for(lambda: (j := live_app_job())["state"] == "running" and j["kimg"] > 0 and j,
                 what="the fake trainer to report progress")  # fmt: skip

        def call(action: str):
            def post(_i: int):
                with live_app.client("admin") as c:
                    return c.post(f"/api/jobs/{job_id}/{action}")

            return post

        cancels = _in_threads(8, call("cancel"))
        # 202 while it stops, 200 once it has stopped: never an error, never a second signal
        assert {r.status_code for r in cancels} <= {200, 202}, [r.text for r in cancels]
        wait_for(lambda: live_app_job()["state"] == "cancelled", what="the cancel to land")
        (settings.runs_dir / str(job_id) / "snapshot-000001.pt").write_bytes(b"x")
        (settings.runs_dir / "mode").write_text("finish")
        resumes = _in_threads(8, call("resume"))
        codes = Counter(r.status_code for r in resumes)
        assert codes[202] >= 1 and set(codes) <= {202, 409}, [r.text for r in resumes]
        done = wait_for(lambda: (j := live_app_job())["state"] == "completed" and j,
                        what="the resumed job to complete")  # fmt: skip
    assert _launches(settings, job_id) == 2 and done["attempts"] == 2
    with session_scope(live_app.sessions) as s:
        actions = Counter(s.scalars(select(AuditEvent.action).where(
            AuditEvent.target == f"job:{job_id}")))  # fmt: skip
    assert actions["job.cancel"] == 1 and actions["job.resume"] == 1


class _Ticks:
    """A follower that counts the passes its monitor runs."""

    name = "ticks"

    def __init__(self) -> None:
        self.count = 0

    def tick(self, session, start: bool) -> None:
        self.count += 1


def test_two_monitors_on_one_database_start_each_job_once_and_only_one_runs(db, settings):
    jobs = _queued_jobs(db, settings, 4)
    ticks = [_Ticks(), _Ticks()]
    monitors = [
        JobMonitor(settings, db, interval=0.05, devices=Devices(), followers=[t]).start()
        for t in ticks
    ]
    try:
        for job_id in jobs:
            wait_for(lambda j=job_id: _state(db, j) == "completed", what=f"job {job_id} done")
        # read before stopping: a clean stop releases the lease and the other would take over
        held = sorted(m.lease.held for m in monitors)
        ran = sorted(t.count > 0 for t in ticks)
    finally:
        for m in monitors:
            m.stop()
    assert [_launches(settings, j) for j in jobs] == [1, 1, 1, 1]
    assert held == [False, True]
    assert ran == [False, True]  # the other never ran a pass while the holder lived
    assert not any(m.lease.held for m in monitors)


def _state(db, job_id: int) -> str:
    with session_scope(db) as s:
        return s.get(Job, job_id).state


def test_the_lease_passes_on_after_its_ttl_and_at_once_from_a_dead_process(db, settings):
    first, second = LeaseHolder(db, "job-monitor", ttl_s=1), LeaseHolder(db, "job-monitor")
    assert first.hold() and first.hold() and not second.hold()  # renewing keeps it
    time.sleep(1.5)  # `first` stopped renewing: gone after its TTL
    assert second.hold() and not first.hold()
    second.release()
    code = (
        "import sys, time; from app.db import make_engine, make_sessionmaker;"
        "from app.services.monitor_lease import LeaseHolder;"
        "h = LeaseHolder(make_sessionmaker(make_engine(sys.argv[1])), 'job-monitor', 600);"
        "print(h.hold(), flush=True); time.sleep(600)"
    )
    other = subprocess.Popen([sys.executable, "-c", code, db.kw["bind"].url.render_as_string(
        hide_password=False)], cwd=ROOT, stdout=subprocess.PIPE, text=True)  # fmt: skip
    try:
        assert other.stdout.readline().strip() == "True"
        assert not second.hold()  # another app instance holds it for 10 minutes
    finally:
        other.kill()
        other.wait()
    assert second.hold()  # its process is gone (same machine): no need to wait 10 minutes
