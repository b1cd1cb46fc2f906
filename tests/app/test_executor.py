"""The executor seam without a cluster: the local backend, the trainer's exit record, the SLURM
batch script and state words (the real scheduler is exercised in tests/cluster/)."""

from __future__ import annotations

import dataclasses
import subprocess
import sys

from sqlalchemy import func, select

from app.db import session_scope
from app.models import Job
from app.trainer_client.executor import Launch, LocalExecutor, Resources, make_executor
from app.trainer_client.slurm import SlurmExecutor
from app.trainer_client.slurm_states import describe_end, describe_pending, is_final
from tests.app.job_helpers import TINY, make_dataset


def test_the_local_backend_reads_an_unseen_exit_from_the_run_folder(tmp_path):
    """A process the app did not start (or could not reap) ended: exit.json says how."""
    ex = LocalExecutor(sys.executable)
    (tmp_path / "exit.json").write_text('{"code": 4, "reason": "stopped"}')
    status = ex.check(1, 999_999_999, None, str(tmp_path))
    assert status.exited and status.code == 4


def test_a_local_launch_runs_and_its_exit_code_is_seen(tmp_path):
    ex = LocalExecutor(sys.executable)
    started = ex.launch(Launch(key=7, argv=[sys.executable, "-c", "import sys; sys.exit(3)"],
                               run_dir=tmp_path, name="t"))  # fmt: skip
    assert started.pid and started.scheduler_id is None
    subprocess.run(["sleep", "0.1"])
    for _ in range(200):
        status = ex.check(7, started.pid, None, str(tmp_path))
        if status.exited:
            break
        subprocess.run(["sleep", "0.05"])
    assert status.exited and status.code == 3
    assert (tmp_path / "command.txt").read_text().startswith(sys.executable)


def test_the_backend_follows_the_setting(settings):
    assert make_executor(settings).kind == "local"
    assert make_executor(dataclasses.replace(settings, executor="slurm")).kind == "slurm"


def test_a_one_process_script_execs_the_trainer_and_asks_for_the_warning(settings, tmp_path):
    cluster = {
        "executor": "slurm", "slurm_partition": "gpu", "slurm_account": "rad",
        "slurm_mem": "64G", "slurm_signal_margin_s": 300,
        "slurm_extra": "--constraint=a100; --exclusive",
        "slurm_env_setup": "source /shared/venv/bin/activate",
    }
    s = dataclasses.replace(settings, **cluster)
    launch = Launch(key=1, argv=["/py", "-m", "trainer", "train", "--outdir", "/r 1"],
                    run_dir=tmp_path, name="job 1", env={"A": "b c"},
                    resources=Resources(gpus=1, time_limit_min=4))  # fmt: skip
    script = SlurmExecutor(s, "/py").script(launch)
    for line in ("#SBATCH --partition=gpu", "#SBATCH --account=rad", "#SBATCH --mem=64G",
                 "#SBATCH --gpus-per-node=1", "#SBATCH --time=4", "#SBATCH --signal=B:TERM@120",
                 "#SBATCH --constraint=a100", "#SBATCH --exclusive",
                 "source /shared/venv/bin/activate", "export A='b c'"):  # fmt: skip
        assert line + "\n" in script, line
    assert "\nexec /py -m trainer train --outdir '/r 1' >> " in script  # quoted, exec'd
    assert "#SBATCH --no-requeue\n" in script  # the app resubmits, with --resume latest
    assert "srun" not in script and "#SBATCH --job-name=medsynth-job-1\n" in script


def test_scheduler_states_read_as_words():
    assert describe_pending("Resources") == "queued on the cluster: waiting for resources"
    assert "over the account's GPU limit" in describe_pending("AssocGrpGRES")
    assert describe_pending("Mystery") == "queued on the cluster: waiting (Mystery)"
    assert "out of memory" in describe_end("OUT_OF_MEMORY")
    assert "time limit" in describe_end("TIMEOUT")
    assert is_final("CANCELLED+") and is_final("NODE_FAIL") and not is_final("RUNNING")


def test_cluster_fields_are_refused_on_a_server_that_runs_jobs_itself(live_app, admin):
    ds = make_dataset(live_app.sessions, live_app.settings)
    r = admin.post("/api/jobs", json={"dataset_id": ds, **TINY, "kimg": 0.032, "nodes": 2})
    assert r.status_code == 422 and "cluster" in r.text
    r = admin.post("/api/jobs", json={"dataset_id": ds, **TINY, "kimg": 0.032,
                                      "time_limit_min": 60})  # fmt: skip
    assert r.status_code == 422 and "cluster" in r.text


def test_an_error_on_a_field_the_form_does_not_show_still_reaches_the_page(live_app, admin):
    """'Start training' must never redraw the form without a word and without a job."""
    ds = make_dataset(live_app.sessions, live_app.settings)
    form = {"dataset_id": str(ds), **{k: str(v) for k, v in TINY.items()}, "kimg": "0.032",
            "nodes": "2"}  # a cluster field; this server runs jobs itself, so no such input
    r = admin.post("/jobs", data=form, headers={"HX-Request": "true"})
    assert r.status_code == 200 and 'id="err-unshown"' in r.text
    assert "The job was not started" in r.text and "only for a cluster" in r.text
    with session_scope(live_app.sessions) as session:
        assert session.scalar(select(func.count(Job.id))) == 0
