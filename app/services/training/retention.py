"""Snapshot retention: keep a job's newest N snapshots and its best by FID, delete the rest.

Never deleted: a snapshot a study, a metric run or another job (fine-tuning) references, and
the newest one (a resume continues from it). Deletion is all-or-nothing per pass: the files are
first renamed aside (the run-dir reader no longer sees them), then the rows go in one
transaction, then the renamed files are removed; a failure renames them back.
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.errors import InvalidInput
from app.models import Job, MetricRun, Snapshot, Study
from app.schemas.jobs import BOUNDS
from app.trainer_client import rundir

log = logging.getLogger(__name__)
TRASH = ".deleting"
DEFAULT_KEEP = 5


@dataclass(frozen=True)
class Plan:
    keep: dict[int, list[str]]  # snapshot id -> reasons
    delete: list[Snapshot]


def _referenced(session: Session, ids: list[int]) -> set[int]:
    """Snapshot ids a study, a metric run or a job (fine-tuning source) points at."""
    if not ids:
        return set()
    found: set[int] = set()
    for column in (Study.snapshot_id, MetricRun.snapshot_id, Job.resume_from_snapshot_id):
        found |= set(session.scalars(select(column).where(column.in_(ids))))
    return found


def snapshot_fids(session: Session, job: Job) -> dict[int, float]:
    """FID per snapshot id: a completed metric run's, else the training-time one at its nimg."""
    by_nimg: dict[int, float] = {}
    for row in rundir.read_all_stats(job.run_dir):
        fid, nimg = row.get("fid"), row.get("cur_nimg")
        if isinstance(fid, int | float) and isinstance(nimg, int) and math.isfinite(fid):
            by_nimg[nimg] = float(fid)
    out = {s.id: by_nimg[s.nimg] for s in job.snapshots if s.nimg in by_nimg}
    runs = session.execute(
        select(MetricRun.snapshot_id, MetricRun.result)
        .join(Snapshot, Snapshot.id == MetricRun.snapshot_id)
        .where(Snapshot.job_id == job.id, MetricRun.state == "completed")
        .order_by(MetricRun.id)
    )
    for sid, result in runs:
        fid = (((result or {}).get("metrics") or {}).get("fid") or {}).get("value")
        if isinstance(fid, int | float) and math.isfinite(fid):
            out[sid] = float(fid)
    return out


def plan(session: Session, job: Job) -> Plan:
    """Which snapshots stay (and why) and which go, under the job's retention options."""
    opts = job.options or {}
    n = int(opts.get("keep_snapshots") or DEFAULT_KEEP)
    snaps = sorted(job.snapshots, key=lambda s: s.nimg)
    keep: dict[int, list[str]] = {}
    for s in snaps[-n:]:
        keep.setdefault(s.id, []).append("newest")
    if opts.get("keep_best_fid", True):
        fids = snapshot_fids(session, job)
        if fids:
            keep.setdefault(min(fids, key=lambda k: fids[k]), []).append("best FID")
    for sid in _referenced(session, [s.id for s in snaps]):
        keep.setdefault(sid, []).append("in use")
    return Plan(keep, [s for s in snaps if s.id not in keep])


def _aside(path: Path) -> Path:
    return path.with_name(path.name + TRASH)


def apply(session: Session, job: Job) -> int:
    """Delete the snapshots the plan lets go; the number deleted. Its own unit of work."""
    p = plan(session, job)
    if not p.delete:
        return 0
    moved: list[tuple[Path, Path]] = []
    try:
        for snap in p.delete:
            src = Path(snap.path)
            if src.exists():
                os.replace(src, _aside(src))
                moved.append((src, _aside(src)))
        for snap in p.delete:
            job.snapshots.remove(snap)
            session.delete(snap)
        session.commit()
    except Exception:
        session.rollback()
        for src, aside in moved:
            os.replace(aside, src)
        raise
    for _, aside in moved:
        aside.unlink(missing_ok=True)
    log.info("job %s: retention deleted %d snapshot(s)", job.id, len(p.delete))
    return len(p.delete)


def set_retention(session: Session, job: Job, keep: int, best_fid: bool) -> int:
    """Change a job's retention and apply it now; the number of snapshots deleted."""
    lo, hi, _ = BOUNDS["keep_snapshots"]
    if not lo <= keep <= hi:
        raise InvalidInput(f"keep_snapshots: must be between {lo:g} and {hi:g}")
    job.options = {**(job.options or {}), "keep_snapshots": keep, "keep_best_fid": best_fid}
    session.commit()
    return apply(session, job)


def disk_bytes(job: Job) -> int:
    """What the job's run directory takes on disk (snapshots, grids, logs, metric runs)."""
    return rundir.disk_usage(job.run_dir) if job.run_dir else 0
