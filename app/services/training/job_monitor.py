"""The job monitor: one background thread that follows trainer processes through the database.

Every second it reaps finished trainers (or notices that a re-attached one is gone), imports
new stats lines and snapshot files, keeps the heartbeat, and starts queued jobs when a slot is
free. Processes it did not start (the app restarted) are followed by pid and command line. Followers
(metric runs) are ticked on the same thread after the jobs, each pass in its own session.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Protocol

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session, sessionmaker

from app.db import session_scope
from app.models import Job, Snapshot, utcnow
from app.services.monitor_lease import DEFAULT_TTL_S, LeaseHolder
from app.services.training import retention
from app.services.training.jobs import LIVE, resumable_from
from app.settings import Settings
from app.trainer_client import commands, processes, rundir
from app.trainer_client.executor import Launch, Resources, Status, SubmitFailed, make_executor
from app.trainer_client.processes import Devices

log = logging.getLogger(__name__)
CANCEL_GRACE_S = 600  # SIGKILL a trainer that has not exited this long after SIGTERM
KIMG_EPS = 1e-6
EXIT_STOPPED = 4  # the trainer's code for "stopped by SIGTERM, snapshot written, resumable"
REQUEUE_AFTER = ("TIMEOUT", "PREEMPTED", "NODE_FAIL")  # the cluster cut it: go on if it advanced


class Follower(Protocol):
    """Other background processes the monitor's thread follows (e.g. metric runs)."""

    name: str

    def tick(self, session: Session, start: bool) -> None:
        """Follow what runs; start queued work only when `start` (not on the re-attach pass)."""


class JobMonitor:
    def __init__(
        self,
        settings: Settings,
        sessions: sessionmaker[Session],
        interval: float = 1.0,
        devices: Devices | None = None,
        followers: Sequence[Follower] = (),
        lease_ttl_s: float = DEFAULT_TTL_S,
    ):
        self.settings = settings
        # Several app instances on one database: only the lease holder runs the passes.
        self.lease = LeaseHolder(sessions, "job-monitor", lease_ttl_s)
        self.followers = tuple(followers)
        self.sessions = sessions
        self.interval = interval
        self.python = commands.python_for(settings.python_executable)
        self._devices = devices
        self._devices_ready = threading.Event()
        if devices is not None:
            self._devices_ready.set()
        self.executor = make_executor(settings)  # local processes or a scheduler's jobs
        self._offsets: dict[int, int] = {}  # job id → bytes of stats.jsonl imported
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_errors: dict[str, str] = {}  # pass name -> last logged error

    # ---- lifecycle ----------------------------------------------------------------------------

    def start(self) -> JobMonitor:
        self._thread = threading.Thread(target=self._run, name="job-monitor", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Stop following jobs; the trainers keep running and a new monitor re-attaches."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
        if self.lease.held:  # a clean stop hands the passes to another instance at once
            try:
                self.lease.release()
            except Exception:  # noqa: BLE001 - the database may be gone at shutdown
                log.warning("could not release the monitor lease; it expires by itself")

    def wake(self) -> None:
        """Look now rather than at the next tick (a job was queued or resumed)."""
        self._wake.set()

    def devices(self, timeout: float = 150.0) -> Devices:
        """The machine's GPUs, detected once in a child process when the monitor starts; on a
        cluster, what one node may ask for (the scheduler decides where it runs)."""
        if self.executor.kind == "slurm":
            per_node = self.settings.slurm_gpus_per_node
            return Devices(gpus=8 if per_node else 0, names=("cluster",), cluster=True,
                           default_gpus=max(per_node, 1))  # fmt: skip
        if self._devices is None and not self._devices_ready.wait(timeout):
            return Devices()
        return self._devices or Devices()

    def _run(self) -> None:
        self.run_once(start=False)  # re-attach to (or close) what a former app left running
        if self._devices is None and self.executor.kind == "local":
            self._devices = processes.detect_devices(self.python)
            self._devices_ready.set()
        while not self._stop.is_set():
            self.run_once()
            self._wake.wait(self.interval)
            self._wake.clear()

    def run_once(self, start: bool = True) -> None:
        """One pass over the jobs, then each follower; a failing part does not stop the others.
        Skipped unless this instance holds the monitor lease (another app may run the passes)."""
        with self._lock:
            held: list[bool] = []
            self._guarded("lease", lambda _start: held.append(self.lease.hold()), start)
            if not (held and held[0]):
                return
            self._guarded("jobs", self._jobs_pass, start)
            for follower in self.followers:
                self._guarded(follower.name, lambda s, f=follower: self._tick(f, s), start)

    def _guarded(self, name: str, step: Callable[[bool], None], start: bool) -> None:
        """Errors are logged (once per distinct message) and the next pass retries."""
        try:
            step(start)
            self._last_errors.pop(name, None)
        except Exception as exc:  # noqa: BLE001 - the thread must survive anything
            if str(exc) != self._last_errors.get(name):
                log.exception("monitor pass over %s failed", name)
            self._last_errors[name] = str(exc)

    def _jobs_pass(self, start: bool) -> None:
        self.executor.refresh()  # one scheduler call for every job it runs
        with session_scope(self.sessions) as session:
            for job in session.scalars(select(Job).where(Job.state.in_(LIVE))).all():
                self._follow(session, job)
        if start and not self._stop.is_set():
            with session_scope(self.sessions) as session:
                self._start_queued(session)

    def _tick(self, follower: Follower, start: bool) -> None:
        with session_scope(self.sessions) as session:
            follower.tick(session, start and not self._stop.is_set())

    # ---- following a live job -----------------------------------------------------------------

    def _follow(self, session: Session, job: Job) -> None:
        new = self._import_progress(session, job)
        status = self.executor.check(job.id, job.pid, job.scheduler_id, job.run_dir)
        if not status.exited:
            job.heartbeat_at = utcnow()
            job.scheduler_state = status.waiting
            self._escalate_cancel(job)
            session.commit()
            if new:
                self._retain(session, job)
            return
        new += self._import_progress(session, job)  # what it wrote while exiting
        self._finish(session, job, status)
        if new:
            self._retain(session, job)

    def _retain(self, session: Session, job: Job) -> None:
        """Keep the newest N and the best by FID (the job's options); a failure waits."""
        try:
            retention.apply(session, job)
        except OSError as exc:
            log.warning("job %s: snapshot retention failed (%s); retried next time", job.id, exc)

    def _escalate_cancel(self, job: Job) -> None:
        asked = job.cancel_requested_at
        if job.state == "cancelling" and asked and (job.pid or job.scheduler_id):
            if (utcnow() - asked).total_seconds() > CANCEL_GRACE_S:
                log.warning("job %s ignored SIGTERM for %ss: SIGKILL", job.id, CANCEL_GRACE_S)
                self.executor.kill(job.pid, job.scheduler_id)

    def _finish(self, session: Session, job: Job, status: Status) -> None:
        code = status.code
        reached = job.kimg >= job.total_kimg - KIMG_EPS
        cancelled = job.cancel_requested_at is not None
        stopped = code == EXIT_STOPPED or rundir_stopped(job.run_dir)
        segment = self._close_segment(job, status)
        if not reached and not cancelled and self._requeue(session, job, status, stopped, segment):
            return
        error = None
        if reached and code in (0, None):
            state = "completed"
        elif cancelled and (stopped or code in (0, None, -signal.SIGTERM, -signal.SIGKILL)):
            state = "cancelled"
        elif status.ended_by:
            state = "interrupted" if status.ended_by in REQUEUE_AFTER else "failed"
            error = f"{status.words}. Resume continues from the last snapshot."
        elif stopped:
            state = "interrupted"
            error = (
                f"the trainer was stopped from outside at {job.kimg:g} of {job.total_kimg:g} "
                "kimg (SIGTERM); it wrote a snapshot. Resume continues from it."
            )
        elif code is None:
            state = "interrupted"
            error = (
                "the trainer process is gone (the app or the machine restarted while it ran); "
                "its exit code is unknown. Resume continues from the last snapshot."
            )
        elif code == 0:
            state = "interrupted"
            error = (
                f"the trainer exited at {job.kimg:g} of {job.total_kimg:g} kimg without a "
                "cancel from the app (stopped from outside?)"
            )
        else:
            state = "failed"
            last = rundir.last_error_line(job.run_dir)
            error = f"{processes.describe_exit(code)}" + (f": {last}" if last else "")
        session.execute(
            update(Job)
            .where(Job.id == job.id, Job.state.in_(LIVE))
            .values(state=state, exit_code=code, error=error, finished_at=utcnow(),
                    scheduler_state=None, segments=segment)
        )  # fmt: skip
        session.commit()
        self.executor.forget(job.id)  # recorded now, or the row was no longer live
        log.info("job %s %s (%s)", job.id, state, processes.describe_exit(code))

    def _close_segment(self, job: Job, status: Status) -> list | None:
        """The job's segments with the last one ended (cluster runs keep one per launch)."""
        segments = [dict(x) for x in (job.segments or [])]
        if segments and segments[-1].get("ended_at") is None:
            segments[-1].update(
                ended_at=utcnow().isoformat(timespec="seconds"), kimg_end=job.kimg,
                exit_code=status.code, ended_by=status.ended_by or ("stopped" if
                status.code == EXIT_STOPPED else None),
            )  # fmt: skip
        return segments or None

    def _requeue(
        self, session: Session, job: Job, status: Status, stopped: bool, segments: list | None
    ) -> bool:
        """A cluster job cut by its time limit (or preempted, or its node lost) goes back to
        the queue and resumes from its snapshot, until its kimg are done. Only when the cut
        segment advanced (a new snapshot), so a job that cannot progress is not resubmitted
        forever."""
        if not self.executor.requeues:
            return False
        if not (stopped or status.ended_by in REQUEUE_AFTER):
            return False
        segments = segments or []
        if len(segments) >= self.settings.slurm_max_segments:
            return False
        since = float(segments[-1].get("submitted_ts") or 0.0) if segments else 0.0
        if not any(_mtime(path) >= since for _, path in rundir.snapshot_files(job.run_dir)):
            return False  # this segment wrote no snapshot: requeueing would not advance
        requeued = session.execute(
            update(Job)
            .where(Job.id == job.id, Job.state == "running", Job.cancel_requested_at.is_(None))
            .values(state="queued", pid=None, scheduler_id=None, segments=segments,
                    scheduler_state="requeued after " + (status.ended_by or "its time limit")
                    .lower().replace("_", " "))
        )  # fmt: skip
        session.commit()
        self.executor.forget(job.id)
        if requeued.rowcount == 1:
            log.info("job %s requeued at %.3f kimg (segment %d)", job.id, job.kimg, len(segments))
        return requeued.rowcount == 1

    def _import_progress(self, session: Session, job: Job) -> int:
        """New complete stats lines → kimg, sec/kimg, last stats; new snapshot files → rows.

        Returns how many snapshot rows are new."""
        stats_path = Path(job.run_dir) / "stats.jsonl"
        rows, offset = rundir.read_new_stats(stats_path, self._offsets.get(job.id, 0))
        self._offsets[job.id] = offset
        if rows:
            last = rows[-1]
            if isinstance(last.get("kimg"), int | float):
                job.kimg = float(last["kimg"])
            if isinstance(last.get("sec_per_kimg"), int | float):
                job.sec_per_kimg = float(last["sec_per_kimg"])
            job.last_stats = last
        self._import_step(job)
        known, added = {s.nimg: s for s in job.snapshots}, 0
        for nimg, path in rundir.snapshot_files(job.run_dir):
            try:
                st = path.stat()
            except OSError:
                continue
            samples = rundir.samples_for(path)
            samples_path = str(samples) if samples.is_file() else None
            snap = known.get(nimg)
            if snap is None:
                made = datetime.fromtimestamp(st.st_mtime)
                snap = Snapshot(kimg=nimg // 1000, nimg=nimg, path=str(path),
                                size_bytes=st.st_size, created_at=made)  # fmt: skip
                job.snapshots.append(snap)
                known[nimg] = snap
                added += 1
            elif snap.size_bytes != st.st_size:  # rewritten after a resume
                snap.size_bytes = st.st_size
            if samples_path and snap.samples_path != samples_path:
                snap.samples_path = samples_path
        session.flush()
        return added

    def _import_step(self, job: Job) -> None:
        """Per-step progress (progress.json) before the first tick: kimg and a first speed."""
        step = rundir.read_progress(job.run_dir) if job.state in LIVE else None
        nimg, sec, batch = (
            (step or {}).get("cur_nimg"),
            (step or {}).get("sec_per_step"),
            (step or {}).get("batch"),
        )
        if isinstance(nimg, int) and nimg / 1000 > job.kimg:
            job.kimg = nimg / 1000
            if job.sec_per_kimg is None and isinstance(sec, int | float) and batch:
                job.sec_per_kimg = sec * 1000 / batch

    # ---- starting queued jobs -----------------------------------------------------------------

    def _start_queued(self, session: Session) -> None:
        live = session.scalar(select(func.count()).where(Job.state.in_(LIVE))) or 0
        limit = (self.settings.slurm_max_jobs if self.executor.kind == "slurm"
                 else self.settings.max_concurrent_jobs)  # fmt: skip
        free = limit - live
        if free <= 0:
            return
        q = select(Job).where(Job.state == "queued").order_by(Job.id).limit(free)
        for job in session.scalars(q).all():
            self._launch(session, job)

    def _gpu_indices(self, session: Session, job: Job) -> list[int]:
        """The GPUs not used by other live jobs (shared when there are more slots than GPUs)."""
        want = int(job.options.get("gpus", 0))
        used: list[int] = []
        for dev in session.scalars(select(Job.device).where(Job.state.in_(LIVE), Job.id != job.id)):
            if dev.startswith("cuda:"):
                used += [int(i) for i in dev[5:].split(",") if i.isdigit()]
        total = self.devices().gpus
        free = [i for i in range(total) if i not in used]
        return (free + [i for i in range(total) if i in used])[:want]

    def _launch(self, session: Session, job: Job) -> None:
        resume = resumable_from(session, job)
        now = utcnow()
        claimed = session.execute(
            update(Job)
            .where(Job.id == job.id, Job.state == "queued")
            .values(state="running", pid=None, scheduler_id=None, started_at=now,
                    heartbeat_at=now, attempts=Job.attempts + 1, exit_code=None, error=None)
        )  # fmt: skip
        session.commit()
        if claimed.rowcount != 1:
            return  # cancelled meanwhile
        session.refresh(job)
        o = job.options
        resources = Resources(gpus=int(o.get("gpus") or 0), nodes=int(o.get("nodes") or 1),
                              time_limit_min=o.get("time_limit_min"))  # fmt: skip
        env, device = {}, "cpu"
        if self.executor.kind == "local":
            # A CPU job sees no GPU at all (so it cannot take memory from the GPU jobs).
            gpus = self._gpu_indices(session, job)
            env = {"CUDA_VISIBLE_DEVICES": ",".join(map(str, gpus))}
            device = "cuda:" + ",".join(map(str, gpus)) if gpus else "cpu"
        clear_exit_record(job.run_dir)
        try:
            argv = commands.train_argv(self.python, o, job.run_dir, job.total_kimg, resume)
            started = self.executor.launch(Launch(key=job.id, argv=argv, run_dir=Path(job.run_dir),
                                                  name=f"job-{job.id}", resources=resources,
                                                  env=env))  # fmt: skip
        except (OSError, SubmitFailed) as exc:
            words = (
                str(exc) if isinstance(exc, SubmitFailed) else f"could not start the trainer: {exc}"
            )
            session.execute(
                update(Job)
                .where(Job.id == job.id)
                .values(state="failed", error=words, finished_at=utcnow())
            )  # fmt: skip
            session.commit()
            return
        segments = [dict(x) for x in (job.segments or [])]
        if started.scheduler_id:
            segments.append({"scheduler_id": started.scheduler_id, "kimg_start": job.kimg,
                             "submitted_at": utcnow().isoformat(timespec="seconds"),
                             "submitted_ts": time.time(), "ended_at": None})  # fmt: skip
        session.execute(
            update(Job)
            .where(Job.id == job.id)
            .values(pid=started.pid, scheduler_id=started.scheduler_id,
                    device=started.device if started.scheduler_id else device,
                    segments=segments or None,
                    scheduler_state="submitted to the cluster" if started.scheduler_id else None)
        )  # fmt: skip
        session.commit()
        session.refresh(job)
        if job.state == "cancelling":  # cancelled while we were starting it
            self.executor.stop(job.pid, job.scheduler_id, job.run_dir)
        where = started.scheduler_id or f"pid {started.pid} on {device}"
        log.info("job %s started: %s (resume: %s)", job.id, where, resume)


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


def rundir_stopped(run_dir: str) -> bool:
    """The trainer's own record says it stopped on a signal with its snapshot written (under
    torchrun the exit code is torchrun's, not the trainer's)."""
    return (rundir.read_exit_record(run_dir) or {}).get("reason") == "stopped"


def clear_exit_record(run_dir: str) -> None:
    """A launch starts without the former launch's exit record."""
    try:
        (Path(run_dir) / "exit.json").unlink()
    except OSError:
        pass
