"""What the utility pages and the API show: runs as dicts, the snapshot page's panel, and
the results page beside the snapshot's FID, C2ST and reader-study numbers."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.models import Snapshot, Study, User, UtilityRun
from app.services.curation.datasets import heldout_candidates
from app.services.evaluation.metric_runs import list_runs as metric_runs
from app.services.utility import report
from app.services.utility.runs import ACTIVE, DEFAULTS, list_runs


def run_dict(run: UtilityRun) -> dict[str, Any]:
    result = run.result
    return {
        "id": run.id, "snapshot_id": run.snapshot_id, "train_dataset_id": run.train_dataset_id,
        "test_dataset_id": run.test_dataset_id, "task": run.task, "state": run.state,
        "cancelling": run.state == "running" and run.cancel_requested_at is not None,
        "options": {k: v for k, v in run.options.items() if not k.endswith("_zip")},
        "progress": run.progress, "result": result,
        "verdict": report.verdict(result) if result else None, "error": run.error,
        "created_at": run.created_at, "started_at": run.started_at,
        "finished_at": run.finished_at,
    }  # fmt: skip


def panel_context(session: Session, snap: Snapshot, form: Mapping[str, Any] | None = None,
                  error: str | None = None, cuda: bool = False) -> dict[str, Any]:  # fmt: skip
    """The snapshot page's Utility section: the start form (held-out versions to test on,
    the devices this machine has) and this snapshot's runs."""
    runs = [run_dict(r) for r in list_runs(session, snap.id)]
    train = snap.job.dataset
    return {
        "snap": snap, "utility_runs": runs,
        "utility_active": [r for r in runs if r["state"] in ACTIVE],
        "heldout": heldout_candidates(session, train), "train_dataset": train,
        "utility_form": {**DEFAULTS, "task": "segmentation", **(form or {})},
        "utility_error": error,
        "utility_devices": ("auto", "cpu", "cuda") if cuda else ("auto", "cpu"),
    }  # fmt: skip


def _studies(session: Session, snapshot_id: int, user: User) -> list[dict[str, Any]]:
    """Reader studies of the snapshot with their verdicts (admins only: truth is in them)."""
    from app.services.studies.results import results

    if not user.is_admin:
        return []
    out = []
    for study in session.scalars(select(Study).where(Study.snapshot_id == snapshot_id)):
        try:
            verdict = results(session, study.id, user).get("verdict")
        except Exception:  # noqa: BLE001 - a study's statistics must not break this page
            verdict = None
        out.append({"id": study.id, "name": study.name, "state": study.state,
                    "verdict": verdict})  # fmt: skip
    return out


def page_context(session: Session, run: UtilityRun, user: User) -> dict[str, Any]:
    """The results page: table, learning curve, verdict, and the other evaluations."""
    from app.presentation.metric_views import latest

    view = run_dict(run)
    result = run.result or {}
    return {
        "run": view, "snap": run.snapshot, "result": result,
        "table": report.table(result) if result else None,
        "curve": report.learning_curve(result) if result else None,
        "metric_name": report.METRIC_NAMES.get(result.get("metric", ""), "score"),
        "why_not": report.why_not_callable(result) if result else None,
        "metrics": latest(metric_runs(session, run.snapshot_id)),
        "studies": _studies(session, run.snapshot_id, user),
        "active": run.state in ACTIVE,
    }  # fmt: skip
