"""Disk: snapshot retention per job, names that cannot collide below 1 kimg, disk use shown."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from app.db import session_scope
from app.models import Job, Snapshot
from app.services.training import retention
from app.services.training.job_monitor import JobMonitor
from app.trainer_client.processes import Devices
from tests.app.job_helpers import make_dataset, write_zip

ROOT = Path(__file__).resolve().parents[2]


def _job_with_snapshots(db, settings, ds: int, n: int, **opts) -> tuple[int, Path]:
    run = settings.runs_dir / f"ret-{len(list(settings.runs_dir.iterdir()))}"
    run.mkdir(parents=True)
    rows = []
    for k in range(n):
        (run / f"snapshot-{k:06d}.pt").write_bytes(b"x" * 100)
        rows.append({"tick": k, "kimg": float(k), "cur_nimg": k * 1000, "fid": 50.0 - k * (k == 1)})
    (run / "stats.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    with session_scope(db) as session:
        job = Job(dataset_id=ds, state="running", options=opts, run_dir=str(run), resolution=16,
                  total_kimg=100.0, pid=None)  # fmt: skip
        session.add(job)
        session.flush()
        return job.id, run


def test_retention_keeps_the_newest_the_best_fid_and_what_is_in_use(db, settings):
    ds = make_dataset(db, settings)
    job_id, run = _job_with_snapshots(db, settings, ds, 8, keep_snapshots=2, keep_best_fid=True)
    monitor = JobMonitor(settings, db, devices=Devices())
    with session_scope(db) as session:
        job = session.get(Job, job_id)
        monitor._import_progress(session, job)
        by_kimg = {s.kimg: s.id for s in job.snapshots}
        # another job fine-tunes from the snapshot at 3 kimg: it must survive
        session.add(Job(dataset_id=ds, state="queued", options={}, run_dir="/x", resolution=16,
                        total_kimg=1.0, resume_from_snapshot_id=by_kimg[3]))  # fmt: skip
        session.commit()
        plan = retention.plan(session, job)
        assert plan.keep == {by_kimg[6]: ["newest"], by_kimg[7]: ["newest"],
                             by_kimg[1]: ["best FID"], by_kimg[3]: ["in use"]}  # fmt: skip
        assert retention.apply(session, job) == 4
    with session_scope(db) as session:
        left = sorted(s.kimg for s in session.get(Job, job_id).snapshots)
    assert left == [1, 3, 6, 7]
    assert sorted(p.name for p in run.glob("snapshot-*")) == [
        "snapshot-000001.pt", "snapshot-000003.pt", "snapshot-000006.pt", "snapshot-000007.pt"
    ]  # fmt: skip
    assert retention.disk_bytes(Job(run_dir=str(run))) > 400


def test_a_failed_deletion_leaves_every_file_and_row(db, settings, monkeypatch):
    ds = make_dataset(db, settings)
    job_id, run = _job_with_snapshots(db, settings, ds, 4, keep_snapshots=1, keep_best_fid=False)
    with session_scope(db) as session:
        job = session.get(Job, job_id)
        JobMonitor(settings, db, devices=Devices())._import_progress(session, job)
        session.commit()

        def broken_commit():
            raise OSError("database is locked")

        monkeypatch.setattr(session, "commit", broken_commit)
        try:
            retention.apply(session, job)
        except OSError:
            pass
        monkeypatch.undo()
    with session_scope(db) as session:
        assert len(session.get(Job, job_id).snapshots) == 4
    assert len(list(run.glob("snapshot-*.pt"))) == 4 and not list(run.glob("*.deleting"))


def test_runs_shorter_than_one_kimg_write_snapshots_that_do_not_collide(db, settings, tmp_path):
    data = tmp_path / "d.zip"
    write_zip(data, n=8)
    run = settings.runs_dir / "short"
    argv = [sys.executable, "-m", "trainer", "train", "--data", str(data), "--outdir", str(run),
            "--res", "16", "--kimg", "0.016", "--tick", "0.008", "--snap", "1", "--batch", "4",
            "--cbase", "64", "--cmax", "16", "--zdim", "16", "--device", "cpu"]  # fmt: skip
    out = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    names = sorted(p.name for p in run.glob("snapshot-*.pt"))
    assert names == ["snapshot-000000-000000016.pt", "snapshot-000000.pt"]
    ds = make_dataset(db, settings)
    with session_scope(db) as session:
        job = Job(dataset_id=ds, state="running", options={}, run_dir=str(run), resolution=16,
                  total_kimg=0.016)  # fmt: skip
        session.add(job)
        session.flush()
        JobMonitor(settings, db, devices=Devices())._import_progress(session, job)
        rows = [(s.nimg, Path(s.path).name, bool(s.samples_path)) for s in job.snapshots]
    assert rows == [(0, "snapshot-000000.pt", True),
                    (16, "snapshot-000000-000000016.pt", True)]  # fmt: skip
    resumed = subprocess.run(
        [sys.executable, "-m", "trainer", "train", "--outdir", str(run), "--resume", "latest",
         "--kimg", "0.024", "--device", "cpu"],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr
    assert "resumed at kimg 0.016" in (run / "log.txt").read_text()
    assert (run / "snapshot-000000-000000024.pt").is_file()


def test_old_rows_without_nimg_take_it_from_kimg(db, settings):
    ds = make_dataset(db, settings)
    with session_scope(db) as session:
        job = Job(dataset_id=ds, state="completed", options={}, run_dir="/x", resolution=16,
                  total_kimg=8)  # fmt: skip
        job.snapshots += [Snapshot(kimg=4, path="/x/a.pt"), Snapshot(kimg=8, path="/x/b.pt")]
        session.add(job)
        session.flush()
        assert [s.nimg for s in job.snapshots] == [4000, 8000]


def test_reviewers_see_no_server_paths(live_app, admin, reader):
    ds = make_dataset(live_app.sessions, live_app.settings)
    run = live_app.settings.runs_dir / "paths"
    run.mkdir(parents=True)
    (run / "log.txt").write_text(f"fresh run in {run}: 16 images\n")
    (run / "worker.log").write_text(f"$ python -m trainer train --outdir {run}\n")
    with session_scope(live_app.sessions) as session:
        job = Job(dataset_id=ds, state="failed", options={"data": "/srv/data/d.zip"},
                  run_dir=str(run), resolution=16, total_kimg=1,
                  error=f"exit 1 in {run}")  # fmt: skip
        job.snapshots.append(Snapshot(kimg=0, path=str(run / "snapshot-000000.pt")))
        session.add(job)
        session.flush()
        job_id, snap_id = job.id, job.snapshots[0].id
    seen = reader.get(f"/api/jobs/{job_id}").json()
    assert seen["run_dir"] is None and "data" not in seen["options"]
    assert seen["worker_log_tail"] is None and str(run) not in seen["log_tail"]
    assert str(run) not in seen["error"] and seen["snapshots"][0]["path"] is None
    assert reader.get(f"/api/snapshots/{snap_id}").json()["path"] is None
    page = reader.get(f"/jobs/{job_id}").text
    assert str(run) not in page and "/srv/data" not in page
    full = admin.get(f"/api/jobs/{job_id}").json()
    assert full["run_dir"] == str(run) and full["options"]["data"] == "/srv/data/d.zip"
    assert "python -m trainer" in full["worker_log_tail"]
    assert str(run) in admin.get(f"/jobs/{job_id}").text


def test_retention_through_the_api(live_app, admin, reader):
    ds = make_dataset(live_app.sessions, live_app.settings)
    job_id, run = _job_with_snapshots(live_app.sessions, live_app.settings, ds, 4)
    with session_scope(live_app.sessions) as session:
        job = session.get(Job, job_id)
        job.state = "completed"
        JobMonitor(live_app.settings, live_app.sessions, devices=Devices())._import_progress(
            session, job
        )
    url = f"/api/jobs/{job_id}/retention"
    assert reader.put(url, json={"keep_snapshots": 1}).status_code == 403
    assert admin.put(url, json={"keep_snapshots": 0}).status_code == 422
    r = admin.put(url, json={"keep_snapshots": 1, "keep_best_fid": False})
    assert r.status_code == 200 and r.json()["deleted"] == 3, r.text
    assert r.json()["disk_bytes"] > 0 and len(list(run.glob("snapshot-*.pt"))) == 1
    page = admin.get(f"/jobs/{job_id}").text
    assert "Kept because" in page and "newest" in page and "on disk" in page
