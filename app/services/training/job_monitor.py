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
from app.trainer_client.processes import Devices

log = logging.getLogger(__name__)
CANCEL_GRACE_S = 600  # SIGKILL a trainer that has not exited this long after SIGTERM
KIMG_EPS = 1e-6


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
        self._procs = processes.ProcessFollower()  # by job id
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

    def wake(self) -> None:
        """Look now rather than at the next tick (a job was queued or resumed)."""
        self._wake.set()

    def devices(self, timeout: float = 150.0) -> Devices:
        """The machine's GPUs, detected once in a child process when the monitor starts."""
        if self._devices is None and not self._devices_ready.wait(timeout):
            return Devices()
        return self._devices or Devices()

    def _run(self) -> None:
        self.run_once(start=False)  # re-attach to (or close) what a former app left running
        if self._devices is None:
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
        exited, code = self._check_process(job)
        if not exited:
            job.heartbeat_at = utcnow()
            self._escalate_cancel(job)
            session.commit()
            if new:
                self._retain(session, job)
            return
        new += self._import_progress(session, job)  # what it wrote while exiting
        self._finish(session, job, code)
        if new:
            self._retain(session, job)

    def _retain(self, session: Session, job: Job) -> None:
        """Keep the newest N and the best by FID (the job's options); a failure waits."""
        try:
            retention.apply(session, job)
        except OSError as exc:
            log.warning("job %s: snapshot retention failed (%s); retried next time", job.id, exc)

    def _check_process(self, job: Job) -> tuple[bool, int | None]:
        """(exited, exit code or None when it was not our child to reap)."""
        return self._procs.check(job.id, job.pid, job.run_dir)

    def _escalate_cancel(self, job: Job) -> None:
        asked = job.cancel_requested_at
        if job.state == "cancelling" and asked and job.pid:
            if (utcnow() - asked).total_seconds() > CANCEL_GRACE_S:
                log.warning("job %s ignored SIGTERM for %ss: SIGKILL", job.id, CANCEL_GRACE_S)
                processes.kill_tree(job.pid)

    def _finish(self, session: Session, job: Job, code: int | None) -> None:
        reached = job.kimg >= job.total_kimg - KIMG_EPS
        cancelled = job.cancel_requested_at is not None
        error = None
        if reached and code in (0, None):
            state = "completed"
        elif cancelled and code in (0, None, -signal.SIGTERM, -signal.SIGKILL):
            state = "cancelled"
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
            .values(state=state, exit_code=code, error=error, finished_at=utcnow())
        )
        session.commit()
        self._procs.forget(job.id)  # recorded now, or the row was no longer live
        log.info("job %s %s (%s)", job.id, state, processes.describe_exit(code))

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
        free = self.settings.max_concurrent_jobs - live
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
            .values(state="running", pid=None, started_at=now, heartbeat_at=now,
                    attempts=Job.attempts + 1, exit_code=None, error=None)
        )  # fmt: skip
        session.commit()
        if claimed.rowcount != 1:
            return  # cancelled meanwhile
        session.refresh(job)
        gpus = self._gpu_indices(session, job)
        # A CPU job sees no GPU at all (so it cannot take memory from the GPU jobs).
        env = {"CUDA_VISIBLE_DEVICES": ",".join(map(str, gpus))}
        device = "cuda:" + ",".join(map(str, gpus)) if gpus else "cpu"
        try:
            o, total = job.options, job.total_kimg
            argv = commands.train_argv(self.python, o, job.run_dir, total, resume)
            proc = processes.spawn(argv, Path(job.run_dir), env)
        except OSError as exc:
            session.execute(
                update(Job)
                .where(Job.id == job.id)
                .values(state="failed", error=f"could not start the trainer: {exc}",
                        finished_at=utcnow())
            )  # fmt: skip
            session.commit()
            return
        self._procs.started(job.id, proc)
        session.execute(update(Job).where(Job.id == job.id).values(pid=proc.pid, device=device))
        session.commit()
        session.refresh(job)
        if job.state == "cancelling":  # cancelled while we were spawning
            processes.request_stop(proc.pid)
        log.info("job %s started: pid %s on %s (resume: %s)", job.id, proc.pid, device, resume)
