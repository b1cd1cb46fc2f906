"""Shared pieces of the metric-run tests: a snapshot world with its own run folder, fast
metric options, and waiting for a run through the API."""

from __future__ import annotations

from typing import Any

import httpx

from app.db import session_scope
from app.models import Job, Snapshot
from tests.app.job_helpers import wait_for
from tests.app.study_setup import World, add_world

# Registers tests.trainer.metrics_support's tiny extractor in the metrics process: no weights.
TINY_EXTRACTOR_MODULE = "tests.trainer.metrics_support:register_tiny_extractor"
# Everything but PPL (its LPIPS network always needs downloaded weights), made fast.
FAST = {"metrics": ["fid", "kid", "pr", "memorization", "c2st"], "num": 24, "device": "cpu",
        "kid_subsets": 5, "c2st_epochs": 2}  # fmt: skip


def metric_world(live_app, tiny_run) -> World:
    """The real tiny snapshot and its dataset; the job's run folder is this test's own."""
    world = add_world(live_app.sessions, live_app.settings.data_dir / "fixtures", tiny_run)
    with session_scope(live_app.sessions) as session:
        job = session.get(Job, session.get(Snapshot, world.snapshot_id).job_id)
        job.run_dir = str(live_app.settings.runs_dir / str(job.id))
    return world


def wait_run(client: httpx.Client, run_id: int, states=("completed", "failed", "cancelled"),
             timeout: float = 120.0) -> dict[str, Any]:  # fmt: skip
    def check():
        run = client.get(f"/api/metric-runs/{run_id}").json()
        return run if run["state"] in states else None

    return wait_for(check, timeout=timeout, what=f"metric run {run_id} to reach {states}")
