"""Training jobs: create (validated, queued), cancel, resume, and what a job page shows.

These functions commit: the job monitor (another thread) acts on the rows as soon as they
change. State changes are compare-and-set updates, so a click racing the monitor cannot undo it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session, selectinload

from app.errors import Conflict, InvalidInput, NotFound
from app.models import AuditEvent, Job, Snapshot, User, utcnow
from app.schemas.jobs import JobOut
from app.schemas.snapshots import SnapshotOut
from app.services.training import estimate, feasible, launch_plan
from app.services.training.job_options import MAX_KIMG, Devices
from app.settings import Settings
from app.trainer_client import rundir
from app.trainer_client.executor import stop_launch

ACTIVE = ("queued", "running", "cancelling")
LIVE = ("running", "cancelling")  # a process exists (or is being started)
RESUMABLE = ("cancelled", "failed", "interrupted")
FINAL = ("cancelled", "completed", "failed", "interrupted")
STALE_HEARTBEAT_S = 30


def _set_state(session: Session, job_id: int, expect: tuple[str, ...], **values: Any) -> bool:
    """Compare-and-set: change the row only if its state is still one of `expect`."""
    res = session.execute(
        update(Job).where(Job.id == job_id, Job.state.in_(expect)).values(**values)
    )
    session.commit()
    return res.rowcount == 1


def _new_run_dir(settings: Settings, job_id: int) -> Path:
    """runs/JOB_ID, or runs/JOB_ID-N if a folder of a former database is in the way."""
    path, n = settings.runs_dir / str(job_id), 1
    while path.exists() and any(path.iterdir()):
        path, n = settings.runs_dir / f"{job_id}-{n}", n + 1
    path.mkdir(parents=True, exist_ok=True)
    return path


def create_job(
    session: Session, settings: Settings, raw: Mapping[str, Any], devices: Devices, user: User
) -> Job:
    """Validate the form and queue the job; the monitor starts it when a slot is free."""
    # length given, over a day confirmed, tick and snapshot intervals from the speed
    dataset, opts = launch_plan.validated(session, raw, devices)
    feasible.check(session, settings, opts, devices)  # memory and MEDSYNTH_MAX_JOB_HOURS
    opts["estimate_s"] = round(estimate.seconds(session, opts), 1)
    job = Job(
        dataset_id=dataset.id,
        state="queued",
        options=opts,
        resolution=opts["resolution"],
        total_kimg=opts["kimg"],
        device="cuda" if opts["gpus"] else "cpu",
        created_by_id=user.id,
        resume_from_snapshot_id=opts["resume_from"],
    )
    try:
        session.add(job)
        session.flush()
        job.run_dir = str(_new_run_dir(settings, job.id))
        audit = {k: v for k, v in opts.items() if k != "data"}
        session.add(
            AuditEvent(user_id=user.id, action="job.create", target=f"job:{job.id}", detail=audit)
        )
        session.commit()
    except Exception:
        session.rollback()
        raise
    return job


def get_job(session: Session, job_id: int) -> Job:
    job = session.get(Job, job_id, populate_existing=True)
    if job is None:
        raise NotFound(f"job {job_id} does not exist")
    return job


def list_jobs(session: Session) -> list[Job]:
    q = select(Job).options(selectinload(Job.dataset)).order_by(Job.id.desc())
    return list(session.scalars(q))


def cancel_job(session: Session, job_id: int, user: User) -> Job:
    """SIGTERM to the trainer's group (it snapshots and exits); repeated clicks are harmless."""
    job = get_job(session, job_id)
    now = utcnow()
    if job.state == "queued":
        if _set_state(
            session, job_id, ("queued",), state="cancelled", cancel_requested_at=now,
            finished_at=now,
        ):  # fmt: skip
            _audit(session, user, "job.cancel", job_id)
            return get_job(session, job_id)
        return cancel_job(session, job_id, user)  # the monitor started it meanwhile
    if job.state == "running":
        asked = {"state": "cancelling", "cancel_requested_at": now}
        if not _set_state(session, job_id, ("running",), **asked):
            return cancel_job(session, job_id, user)
        _audit(session, user, "job.cancel", job_id)
        job = get_job(session, job_id)
        # No pid nor scheduler id only while the monitor is starting it; it stops it right after.
        stop_launch(job.pid, job.scheduler_id, job.run_dir)
        return job
    if job.state in ("cancelling", "cancelled"):
        return job  # already asked: no second signal, nothing else changes
    raise Conflict(f"job {job_id} already {job.state}; there is nothing to cancel")


def resumable_from(session: Session, job: Job) -> str | None:
    """What a relaunch continues from: 'latest' (own snapshot) or the fine-tuning source file."""
    if any(True for _ in rundir.snapshot_files(job.run_dir)):
        return "latest"
    if job.resume_from_snapshot_id:
        src = session.get(Snapshot, job.resume_from_snapshot_id)
        if src is not None and Path(src.path).is_file():
            return src.path
    return None


def resume_job(session: Session, job_id: int, user: User, kimg: float | None = None) -> Job:
    """Queue a cancelled, failed or interrupted job again: same row, same run dir.

    `kimg` optionally changes the total (the trainer allows that on resume, nothing else).
    """
    job = get_job(session, job_id)
    if job.state in ACTIVE:
        raise Conflict(f"job {job_id} is {job.state}; only a stopped job can be resumed")
    if job.state == "imported":
        raise Conflict(
            f"job {job_id} is an imported checkpoint, not a run; start a new job that "
            "fine-tunes from its snapshot"
        )
    if job.state == "completed":
        raise Conflict(
            f"job {job_id} completed all {job.total_kimg:g} kimg; start a new job that "
            "fine-tunes from one of its snapshots to train further"
        )
    if resumable_from(session, job) is None:
        raise Conflict(
            f"job {job_id} has no snapshot to resume from (it stopped before writing one); "
            "start a new job instead"
        )
    values: dict[str, Any] = {}
    if kimg is not None:
        if not math.isfinite(kimg) or kimg <= job.kimg or kimg > MAX_KIMG:
            raise InvalidInput(f"kimg: the new total must be more than the {job.kimg:g} done")
        values = {"total_kimg": kimg, "options": {**job.options, "kimg": kimg}}
    if not _set_state(
        session, job_id, RESUMABLE, state="queued", exit_code=None, error=None, pid=None,
        cancel_requested_at=None, finished_at=None, **values,
    ):  # fmt: skip
        return resume_job(session, job_id, user, kimg)
    _audit(session, user, "job.resume", job_id)
    return get_job(session, job_id)


def _audit(session: Session, user: User, action: str, job_id: int) -> None:
    session.add(AuditEvent(user_id=user.id, action=action, target=f"job:{job_id}"))
    session.commit()


# ---- what the pages and the API show -------------------------------------------------------


def eta_seconds(job: Job) -> float | None:
    if job.state not in LIVE or not job.sec_per_kimg:
        return None
    return max(0.0, (job.total_kimg - job.kimg) * job.sec_per_kimg)


def progress(job: Job) -> float:
    return 0.0 if job.total_kimg <= 0 else min(1.0, max(0.0, job.kimg / job.total_kimg))


def heartbeat_stale(job: Job, now: datetime | None = None) -> bool:
    """A live job whose monitor has not looked at it for a while (monitor stopped?)."""
    if job.state not in LIVE or job.heartbeat_at is None:
        return False
    return ((now or utcnow()) - job.heartbeat_at).total_seconds() > STALE_HEARTBEAT_S


def stats_series(run_dir: str) -> list[dict[str, Any]]:
    """All stats lines; after a resume the rows past the resumed snapshot are superseded."""
    out: list[dict[str, Any]] = []
    for row in rundir.read_all_stats(run_dir):
        k = row.get("kimg")
        if isinstance(k, int | float):
            while out and out[-1]["kimg"] >= k:
                out.pop()
        out.append(row)
    return out


def redact(text: str, job: Job) -> str:
    """A log for a reviewer: the server's paths (run dir, dataset zip) left out."""
    for path in sorted({job.run_dir, str(job.options.get("data") or "")}, key=len, reverse=True):
        if path:
            text = text.replace(path, "…")
    return text


def snapshot_out(snap: Snapshot, admin: bool, kept: list[str] | None = None) -> SnapshotOut:
    return SnapshotOut(
        id=snap.id, job_id=snap.job_id, kimg=snap.nimg / 1000, name=Path(snap.path).name,
        path=snap.path if admin else None, size_bytes=snap.size_bytes,
        created_at=snap.created_at,
        samples_url=f"/api/snapshots/{snap.id}/samples.png" if snap.samples_path else None,
        download_url=f"/api/snapshots/{snap.id}/download" if admin else None,
        resolution=snap.job.resolution if snap.job else None,
        job_state=snap.job.state if snap.job else None, kept_because=kept or [],
    )  # fmt: skip


def job_out(job: Job, admin: bool, detail: bool = True) -> JobOut:
    """The JSON of a job: server paths, the pid and the command line only for admins."""
    out = JobOut(
        id=job.id, state=job.state, dataset_id=job.dataset_id, pid=job.pid if admin else None,
        kimg=job.kimg, total_kimg=job.total_kimg, progress=progress(job),
        resolution=job.resolution, run_dir=job.run_dir if admin else None, device=job.device,
        sec_per_kimg=job.sec_per_kimg, eta_s=eta_seconds(job), exit_code=job.exit_code,
        error=job.error if admin or not job.error else redact(job.error, job),
        attempts=job.attempts, resume_from=job.resume_from_snapshot_id,
        created_at=job.created_at, started_at=job.started_at, finished_at=job.finished_at,
        heartbeat_at=job.heartbeat_at, cancel_requested_at=job.cancel_requested_at,
        estimate_s=(job.options or {}).get("estimate_s"), waiting_for=waiting_for(job),
        step=rundir.read_progress(job.run_dir) if job.state in LIVE else None,
        scheduler_id=job.scheduler_id, scheduler_state=job.scheduler_state,
        segments=job.segments,
        snapshots=[snapshot_out(s, admin) for s in job.snapshots],
    )  # fmt: skip
    if detail:
        opts = dict(job.options or {})
        if not admin:
            opts.pop("data", None)
        log_tail = rundir.tail(Path(job.run_dir) / "log.txt")
        out.options, out.stats = opts, job.last_stats
        out.log_tail = log_tail if admin else redact(log_tail, job)
        if admin:
            out.worker_log_tail = rundir.tail(Path(job.run_dir) / "worker.log", lines=20)
    return out


def waiting_for(job: Job) -> str | None:
    """What a cancelling job is waiting for, in words for the page."""
    if job.state != "cancelling":
        return None
    step = rundir.read_progress(job.run_dir) or {}
    if step.get("stopping"):
        return "the trainer is writing its last snapshot"
    return "the trainer to finish its current step and write a snapshot (seconds)"
