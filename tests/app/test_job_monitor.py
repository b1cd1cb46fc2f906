"""The job monitor and run-dir reading without a trainer: files and rows prepared by hand."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import timedelta

from app.db import session_scope
from app.models import Job, utcnow
from app.presentation import charts
from app.services.training import jobs as svc
from app.services.training.job_monitor import JobMonitor
from app.trainer_client import commands, processes
from app.trainer_client.executor import Resources, local_argv
from app.trainer_client.processes import Devices
from tests.app.job_helpers import make_dataset


def _running_job(db, settings, ds: int, pid: int | None, **kw) -> tuple[int, str]:
    run = settings.runs_dir / f"hand-{pid}-{len(os.listdir(settings.runs_dir))}"
    run.mkdir(parents=True)
    with session_scope(db) as session:
        beat = utcnow() - timedelta(hours=1)
        job = Job(dataset_id=ds, state="running", options={}, run_dir=str(run), resolution=16,
                  total_kimg=1.0, pid=pid, heartbeat_at=beat, **kw)  # fmt: skip
        session.add(job)
        session.flush()
        return job.id, str(run)


def _get(db, job_id: int) -> Job:
    with session_scope(db) as session:
        job = svc.get_job(session, job_id)
        job.snapshots  # noqa: B018 - loaded while the session is open
        return job


def test_a_reused_pid_or_a_missing_pid_never_leaves_a_job_running(db, settings):
    ds = make_dataset(db, settings)
    reused, _ = _running_job(db, settings, ds, os.getpid())  # alive, but not a trainer
    never, _ = _running_job(db, settings, ds, None)  # the app died before spawning
    done = subprocess.Popen([sys.executable, "-c", "pass"])
    done.wait()
    dead, _ = _running_job(db, settings, ds, done.pid)
    JobMonitor(settings, db, devices=Devices()).run_once(start=False)
    for job_id in (reused, never, dead):
        job = _get(db, job_id)
        assert job.state == "interrupted" and "gone" in job.error and job.finished_at


def test_completed_if_the_trainer_vanished_after_its_last_tick(db, settings):
    ds = make_dataset(db, settings)
    job_id, run = _running_job(db, settings, ds, None)
    with open(os.path.join(run, "stats.jsonl"), "w") as f:
        f.write(json.dumps({"kimg": 0.5, "sec_per_kimg": 10}) + "\n")
        f.write(json.dumps({"kimg": 1.0, "sec_per_kimg": 12}) + "\n")
    JobMonitor(settings, db, devices=Devices()).run_once(start=False)
    job = _get(db, job_id)
    assert job.state == "completed" and job.kimg == 1.0 and job.sec_per_kimg == 12


def test_only_complete_snapshots_and_stats_lines_are_imported(db, settings):
    ds = make_dataset(db, settings)
    job_id, run = _running_job(db, settings, ds, None)
    (settings.runs_dir / run / "snapshot-000001.pt").write_bytes(b"x" * 10)
    (settings.runs_dir / run / "snapshot-000002.pt.tmp").write_bytes(b"half")  # disk full
    (settings.runs_dir / run / "samples-000001.png").write_bytes(b"png")
    with open(os.path.join(run, "stats.jsonl"), "w") as f:
        f.write(json.dumps({"kimg": 0.25, "sec_per_kimg": 8.0, "loss_G": 1}) + "\n")
        f.write('{"kimg": 0.5, "sec_per')  # still being written
    monitor = JobMonitor(settings, db, devices=Devices())
    with session_scope(db) as session:
        monitor._import_progress(session, session.get(Job, job_id))
    job = _get(db, job_id)
    assert [(s.kimg, s.size_bytes) for s in job.snapshots] == [(1, 10)]
    assert job.snapshots[0].samples_path.endswith("samples-000001.png")
    assert job.kimg == 0.25 and job.last_stats["loss_G"] == 1
    with open(os.path.join(run, "stats.jsonl"), "a") as f:
        f.write('_kimg": 9.0}\n')  # the rest of the line arrives
    with session_scope(db) as session:
        monitor._import_progress(session, session.get(Job, job_id))
    assert _get(db, job_id).kimg == 0.5


def test_stats_lines_superseded_by_a_resume_are_dropped(tmp_path):
    rows = [{"kimg": k} for k in (0.1, 0.2, 0.3, 0.4)] + [{"kimg": k} for k in (0.3, 0.4, 0.5)]
    (tmp_path / "stats.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert [r["kimg"] for r in svc.stats_series(str(tmp_path))] == [0.1, 0.2, 0.3, 0.4, 0.5]


def test_charts_take_fid_when_stats_carry_it():
    rows = [{"kimg": 1, "loss_G": 1.0, "loss_D": 0.5}, {"kimg": 2, "loss_G": 0.9, "fid50k": 80.0},
            {"kimg": 3, "fid": 52.6, "loss_G": None}]  # fmt: skip
    assert charts.fid_series(rows) == [(2.0, 80.0), (3.0, 52.6)]
    losses, p, fid = (str(c) for c in charts.job_charts(rows))
    assert losses.count("<polyline") == 1 and "<circle" in losses  # loss_D has one point
    assert "no data yet" in p and "<polyline" in fid and "52.6" in fid


def test_exit_codes_read_as_words():
    assert processes.describe_exit(-9) == "killed by signal 9 (SIGKILL)"
    assert processes.describe_exit(2) == "exit code 2"
    assert processes.describe_exit(None) == "exit code unknown"


def test_the_trainer_command_line_for_each_kind_of_launch():
    opts = {"data": "/d.zip", "resolution": 16, "kimg": 2.0, "batch": 4, "gamma": 0.5,
            "aug": "noaug", "target": 0.6, "mirror": True, "cond": False, "snap": 3, "seed": 7,
            "tick": 0.25, "cbase": 64, "cmax": None, "zdim": None, "gpus": 0}  # fmt: skip
    job = Job(options=opts, run_dir="/runs/5", total_kimg=2.0)
    fresh = commands.train_argv("py", job.options, job.run_dir, job.total_kimg, None)
    assert fresh[:4] == ["py", "-m", "trainer", "train"]
    assert " ".join(fresh[4:]) == (
        "--data /d.zip --outdir /runs/5 --res 16 --kimg 2 --batch 4 --gamma 0.5 --aug noaug "
        "--mirror --snap 3 --seed 7 --tick 0.25 --cbase 64 --device cpu"
    )
    tune = commands.train_argv("py", job.options, job.run_dir, 2.0, "/runs/1/snapshot-000004.pt")
    assert tune[-2:] == ["--resume", "/runs/1/snapshot-000004.pt"]
    # --resume latest: only what the trainer lets a resume change
    job.total_kimg = 3.5
    assert commands.train_argv("py", job.options, job.run_dir, job.total_kimg, "latest")[4:] == [
        "--data", "/d.zip", "--outdir", "/runs/5", "--resume", "latest", "--kimg", "3.5",
        "--snap", "3", "--device", "cpu",
    ]  # fmt: skip
    job.options = {**opts, "gpus": 2}
    multi = commands.train_argv("py", job.options, job.run_dir, job.total_kimg, None)
    assert multi[:4] == ["py", "-m", "trainer", "train"]  # one process: the executor wraps it
    multi = local_argv(multi, Resources(gpus=2))
    assert multi[:7] == ["py", "-m", "torch.distributed.run", "--standalone",
                         "--nproc_per_node=2", "-m", "trainer"]  # fmt: skip
    assert multi[-2:] == ["--device", "cuda"]
