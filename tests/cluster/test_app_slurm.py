"""The app with MEDSYNTH_EXECUTOR=slurm against the real one-node SLURM (tests/services/slurm.sh):
jobs, metric runs and utility runs are batch jobs; cancel, resume, re-attach after a restart,
automatic requeue after a time-limit signal (ending bit-identical to an uncut run), a real time
limit, and the scheduler's refusal in the user's words."""

from __future__ import annotations

import dataclasses
import shutil
import subprocess
from pathlib import Path

import pytest
import torch
from sqlalchemy import select

from app.db import session_scope
from app.models import Job, MetricRun, UtilityRun
from app.services.training.job_monitor import JobMonitor
from app.trainer_client import commands
from app.trainer_client.executor import Launch, Resources, SubmitFailed
from app.trainer_client.slurm import SlurmExecutor, job_number
from tests.app.job_helpers import TINY, make_dataset, wait_for
from tests.app.metric_helpers import FAST, TINY_EXTRACTOR_MODULE, metric_world, wait_run
from tests.app.study_setup import tiny_run_fixture  # noqa: F401  (provides tiny_run)
from tests.app.test_utility import BODY, world  # noqa: F401  (a snapshot and held-out data)
from trainer.snapshot import find_latest, load_snapshot

pytestmark = pytest.mark.slow
DONE = ("completed", "failed", "cancelled", "interrupted")


@pytest.fixture
def settings(settings, slurm, request, tmp_path, monkeypatch):
    """This module's app sends everything to the test cluster."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    extra = request.node.get_closest_marker("slurm_settings")
    return dataclasses.replace(
        settings, executor="slurm", slurm_gpus_per_node=0, slurm_signal_margin_s=20,
        metrics_extractor_module=TINY_EXTRACTOR_MODULE, **(extra.kwargs if extra else {}),
    )  # fmt: skip


@pytest.fixture(autouse=True)
def no_stray_cluster_jobs(settings):
    squeue, scancel = shutil.which("squeue"), shutil.which("scancel")  # a test may empty PATH
    yield
    names = subprocess.run([squeue, "--noheader", "--me", "--format=%i|%o"],
                           capture_output=True, text=True, timeout=30).stdout  # fmt: skip
    for line in names.splitlines():
        number, _, command = line.partition("|")
        if str(settings.runs_dir) in command:
            subprocess.run([scancel, "--signal=KILL", "--full", number], timeout=30)


def _job(client, job_id: int) -> dict:
    r = client.get(f"/api/jobs/{job_id}")
    assert r.status_code == 200, r.text
    return r.json()


def _until(client, job_id: int, check, what: str, timeout: float = 300) -> dict:
    seen: list[dict] = []

    def ready():
        seen[:] = [_job(client, job_id)]
        return seen[0] if check(seen[0]) else None

    try:
        return wait_for(ready, timeout=timeout, what=what)
    except AssertionError as exc:
        job = {k: v for k, v in seen[0].items() if k not in ("snapshots", "options", "stats")}
        raise AssertionError(f"{exc}; the job: {job}") from None


def _g_ema(run_dir: str) -> dict[str, torch.Tensor]:
    state = load_snapshot(find_latest(run_dir), "cpu")
    return {k: v for k, v in state["G_ema"]["state_dict"].items()}


def test_a_job_runs_through_slurm_and_its_progress_reaches_the_page(live_app, admin):
    ds = make_dataset(live_app.sessions, live_app.settings)
    r = admin.post("/api/jobs", json={"dataset_id": ds, **TINY, "kimg": 0.064})
    assert r.status_code == 201, r.text
    job_id = r.json()["id"]
    done = _until(admin, job_id, lambda j: j["state"] in DONE, "the job to finish")
    assert done["state"] == "completed" and done["exit_code"] == 0, done
    assert done["scheduler_id"].startswith("slurm:") and done["pid"] is None
    assert done["snapshots"] and done["kimg"] >= 0.064 and done["stats"]["tick"] >= 1
    assert len(done["segments"]) == 1 and done["segments"][0]["exit_code"] == 0
    script = (Path(done["run_dir"]) / "job.sbatch").read_text()
    assert script.startswith("#!/bin/bash") and "\nexec " in script
    assert "--job-name=medsynth-job-" in script and "-m trainer train" in script
    page = admin.get(f"/jobs/{job_id}")
    assert done["scheduler_id"] in page.text and "Segments on the cluster" in page.text
    form = admin.get("/jobs").text  # the form asks what a cluster user chooses
    assert 'name="nodes"' in form and 'name="time_limit_min"' in form and "per node" in form


def test_cancel_leaves_a_snapshot_and_resume_submits_again(live_app, admin):
    ds = make_dataset(live_app.sessions, live_app.settings)
    job_id = admin.post("/api/jobs", json={"dataset_id": ds, **TINY, "kimg": 50}).json()["id"]
    running = _until(admin, job_id, lambda j: j["state"] == "running" and j["kimg"] > 0,
                     "the job to train on the cluster")  # fmt: skip
    assert running["scheduler_state"] is None  # running, not "queued on the cluster"
    assert admin.post(f"/api/jobs/{job_id}/cancel").status_code in (200, 202)
    gone = _until(admin, job_id, lambda j: j["state"] in DONE, "the cancel", timeout=180)
    assert gone["state"] == "cancelled" and gone["exit_code"] == 4, gone
    assert gone["snapshots"] and "stop requested (SIGTERM)" in gone["log_tail"]
    r = admin.post(f"/api/jobs/{job_id}/resume", json={"kimg": round(gone["kimg"] + 0.032, 3)})
    assert r.status_code == 202, r.text
    done = _until(admin, job_id, lambda j: j["state"] in DONE, "the resumed job")
    assert done["state"] == "completed" and done["attempts"] == 2, done
    first, second = done["segments"][0]["scheduler_id"], done["segments"][1]["scheduler_id"]
    assert first != second == done["scheduler_id"]


def test_a_job_cut_twice_by_its_time_limit_signal_is_requeued_and_ends_as_if_uncut(
    live_app, admin, tmp_path
):
    """What `--signal=B:TERM@margin` does before a time limit, sent on purpose twice (the real
    limit comes in whole minutes; the next test waits for one)."""
    ds = make_dataset(live_app.sessions, live_app.settings)
    body = {"dataset_id": ds, **TINY, "kimg": 0.384}  # long enough to be cut twice
    job_id = admin.post("/api/jobs", json=body).json()["id"]
    cut_ids: list[str] = []
    for cut in range(2):

        def ready(j):
            """A new segment that has written a snapshot of its own (a segment cut before it
            wrote one is, rightly, not requeued: it could not advance)."""
            segment = (j["segments"] or [{}])[-1]
            newest = max((s["kimg"] for s in j["snapshots"]), default=-1.0)
            fresh = j["scheduler_id"] not in cut_ids and segment.get("scheduler_id") == j[
                "scheduler_id"] and newest > (segment.get("kimg_start") or 0.0) + 1e-9
            return j["state"] == "running" and fresh

        job = _until(admin, job_id, ready, f"segment {cut + 1}")
        cut_ids.append(job["scheduler_id"])
        number = job_number(job["scheduler_id"])
        subprocess.run(["scancel", "--batch", "--signal=TERM", number], check=True, timeout=30)
    done = _until(admin, job_id, lambda j: j["state"] in DONE, "the job to finish")
    assert done["state"] == "completed" and done["exit_code"] == 0, done
    assert [s["scheduler_id"] for s in done["segments"]][:2] == cut_ids
    assert len(done["segments"]) == 3 and done["attempts"] == 3
    assert all(s["ended_by"] == "stopped" for s in done["segments"][:2])
    # the same options, never cut, run by the trainer directly
    with session_scope(live_app.sessions) as session:
        opts = session.get(Job, job_id).options
    uncut = tmp_path / "uncut"
    argv = commands.train_argv(commands.python_for(""), opts, str(uncut), 0.384, None)
    subprocess.run(argv, check=True, cwd=commands.ROOT, capture_output=True, timeout=600)
    a, b = _g_ema(done["run_dir"]), _g_ema(str(uncut))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.slurm_settings(slurm_max_segments=3)
def test_a_real_time_limit_cuts_the_job_and_the_app_requeues_it(live_app, admin):
    ds = make_dataset(live_app.sessions, live_app.settings)
    body = {"dataset_id": ds, **TINY, "kimg": 100, "time_limit_min": 1}
    job_id = admin.post("/api/jobs", json=body).json()["id"]
    again = _until(admin, job_id, lambda j: len(j["segments"] or []) >= 2,
                   "a requeue after the time limit", timeout=360)  # fmt: skip
    first = again["segments"][0]
    assert first["ended_by"] in ("stopped", "TIMEOUT") and first["kimg_end"] > 0, again
    script = (Path(again["run_dir"]) / "job.sbatch").read_text()
    assert "#SBATCH --time=1\n" in script and "#SBATCH --signal=B:TERM@20\n" in script
    admin.post(f"/api/jobs/{job_id}/cancel")
    _until(admin, job_id, lambda j: j["state"] in DONE, "the cancel", timeout=180)


def test_an_app_restart_reattaches_to_the_cluster_job(live_app, admin, settings, db):
    """The app's own monitor is stopped (as when the process dies); a new one follows the
    running batch job by its scheduler id to the end."""
    ds = make_dataset(live_app.sessions, live_app.settings)
    job_id = admin.post("/api/jobs", json={"dataset_id": ds, **TINY, "kimg": 0.128}).json()["id"]
    _until(admin, job_id, lambda j: j["state"] == "running" and j["kimg"] > 0, "the job to run")
    live_app.monitor.stop()
    second = JobMonitor(settings, db, interval=0.5).start()
    try:
        done = _until(admin, job_id, lambda j: j["state"] in DONE, "the re-attached job")
    finally:
        second.stop()
    assert done["state"] == "completed" and done["attempts"] == 1, done


@pytest.mark.slurm_settings(slurm_partition="no-such-partition")
def test_a_refused_submission_shows_the_schedulers_message(live_app, admin):
    ds = make_dataset(live_app.sessions, live_app.settings)
    job_id = admin.post("/api/jobs", json={"dataset_id": ds, **TINY, "kimg": 0.032}).json()["id"]
    failed = _until(admin, job_id, lambda j: j["state"] in DONE, "the refusal")
    assert failed["state"] == "failed"
    assert "the cluster refused the job" in failed["error"]
    assert "invalid partition" in failed["error"].lower()


def test_no_sbatch_on_path_is_said_in_words(settings, tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    launch = Launch(key=1, argv=["python", "-m", "trainer"], run_dir=tmp_path, name="job-1")
    with pytest.raises(SubmitFailed, match="sbatch.*PATH"):
        SlurmExecutor(settings, "python").launch(launch)


def test_a_multi_node_script_runs_torchrun_under_srun(settings, tmp_path):
    launch = Launch(key=3, argv=["/py", "-m", "trainer", "train", "--outdir", str(tmp_path)],
                    run_dir=tmp_path, name="job-3",
                    resources=Resources(gpus=4, nodes=2, time_limit_min=600))  # fmt: skip
    script = SlurmExecutor(settings, "/py").script(launch)
    assert "#SBATCH --nodes=2\n" in script and "#SBATCH --gpus-per-node=4\n" in script
    assert "#SBATCH --signal=TERM@20\n" in script  # to the steps: srun would SIGKILL them
    assert "exec srun --kill-on-bad-exit=1 /py -m torch.distributed.run --nnodes " in script
    assert '"$SLURM_NNODES" --nproc-per-node 4 --rdzv-backend c10d' in script
    assert '--rdzv-endpoint "$head:$port"' in script


def test_metric_and_utility_runs_go_through_slurm(live_app, admin, tiny_run, world):  # noqa: F811
    mw = metric_world(live_app, tiny_run)
    run = admin.post(f"/api/snapshots/{mw.snapshot_id}/metrics", json=FAST).json()
    sid = world["snapshot"]
    r = admin.post(f"/api/snapshots/{sid}/utility", json={**BODY, "test_dataset_id": world["test"]})
    assert r.status_code == 202, r.text
    done = wait_run(admin, run["id"])
    assert done["state"] == "completed", done

    def utility_done():
        u = admin.get(f"/api/utility-runs/{r.json()['id']}").json()
        return u if u["state"] in ("completed", "failed", "cancelled") else None

    assert wait_for(utility_done, timeout=300, what="the utility run")["state"] == "completed"
    with session_scope(live_app.sessions) as session:
        ids = [*session.scalars(select(MetricRun.scheduler_id)),
               *session.scalars(select(UtilityRun.scheduler_id))]  # fmt: skip
    assert len(ids) >= 2 and all(i and i.startswith("slurm:") for i in ids)
