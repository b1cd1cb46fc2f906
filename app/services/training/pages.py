"""What the job pages show, computed here so the templates call no service function."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from app.errors import InvalidInput
from app.models import Job
from app.services.training import jobs, retention
from app.trainer_client import rundir


def list_rows(all_jobs: list[Job]) -> dict[int, dict[str, Any]]:
    """Per job id: the progress fraction, ETA and estimate the table shows."""
    return {
        j.id: {
            "progress": jobs.progress(j),
            "eta": jobs.eta_seconds(j),
            "estimate": (j.options or {}).get("estimate_s"),
        }  # fmt: skip
        for j in all_jobs
    }


def page_view(session: Session, job: Job, admin: bool) -> dict[str, Any]:
    """The job page's computed values: progress, timing, per-step progress, disk, retention."""
    step = rundir.read_progress(job.run_dir) if job.state in jobs.LIVE else None
    p = retention.plan(session, job) if job.snapshots else None
    opts = dict(job.options or {})
    if not admin:
        opts.pop("data", None)
    return {
        "progress": jobs.progress(job),
        "eta": jobs.eta_seconds(job),
        "estimate": opts.get("estimate_s"),
        "step": step,
        # sec/kimg from the first minibatch (with its warm-up) until a tick has been measured
        "speed_provisional": job.sec_per_kimg is not None and not job.last_stats,
        "waiting_for": jobs.waiting_for(job),
        "can_resume": job.state in jobs.RESUMABLE and bool(jobs.resumable_from(session, job)),
        "stale": jobs.heartbeat_stale(job),
        "disk_bytes": retention.disk_bytes(job),
        "kept": p.keep if p else {},
        "keep_snapshots": opts.get("keep_snapshots") or retention.DEFAULT_KEEP,
        "keep_best_fid": opts.get("keep_best_fid", True),
        "options": opts,
        "run_dir": job.run_dir if admin else None,
        "error": job.error if admin or not job.error else jobs.redact(job.error, job),
    }


def log_for(job: Job, admin: bool, name: str, lines: int) -> str:
    """A log's tail; a reviewer's has the server paths taken out, and no worker.log (it starts
    with the trainer's command line)."""
    if name == "worker.log" and not admin:
        return ""
    text = rundir.tail(Path(job.run_dir) / name, lines=lines)
    return text if admin else jobs.redact(text, job)


def compare_series(other: Job | None) -> dict[str, Any] | None:
    """Another run's stats for the compare chart: its id and rows."""
    if other is None:
        return None
    return {"label": f"job {other.id}", "rows": jobs.stats_series(other.run_dir)}


def change_retention(session: Session, job: Job, keep: Any, best_fid: Any) -> int:
    """Retention from the API or the form (strings or numbers); the number deleted."""
    try:
        n = int(str(keep).strip())
    except ValueError as exc:
        raise InvalidInput(f"keep_snapshots: {keep!r} is not a whole number") from exc
    return retention.set_retention(session, job, n, bool(best_fid) and best_fid != "false")
