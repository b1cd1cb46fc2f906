"""One follower for the app's background CLI runs (metric runs, utility runs), driven from the
job monitor's thread like training jobs.

Each tick: import new progress lines, reap finished processes and record their outcome, and
start queued runs while fewer than `max_running()` run (at a lower CPU priority, so a training
job on the same machine keeps its pace). A run whose process is gone after an app restart is
closed: completed if it wrote its result, otherwise failed ("interrupted").

A run row has: id, state, pid, run_dir, progress, result, error, exit_code, started_at,
finished_at, cancel_requested_at. A kind of run says only how to build its command line, how
many may run, and how its result and failures read.
"""

from __future__ import annotations

import hashlib
import json
import logging
import signal
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from app.errors import Conflict
from app.models import AuditEvent, Snapshot, User, utcnow
from app.settings import Settings
from app.trainer_client import commands, processes, rundir
from app.trainer_client.executor import Launch, Resources, SubmitFailed, make_executor, stop_launch

log = logging.getLogger(__name__)
RESULT_FILE = "result.json"
PROGRESS_FILE = "progress.log"  # the CLI's stderr: JSON progress lines, then any error text
EXIT_CANCELLED = 4  # what the trainer's metrics and utility commands exit with on SIGTERM


def merge_progress(progress: dict[str, Any] | None, rows: list[dict]) -> dict[str, Any]:
    """The CLI's JSON lines folded into one dict: the latest stage counts, message, estimate."""
    out = dict(progress or {})
    for row in rows:
        if "stage" in row:
            out.update({k: row.get(k) for k in ("stage", "done", "total", "elapsed_s", "eta_s")})
        message = row.get("message")
        if isinstance(message, str):
            out["estimate" if message.startswith("estimate") else "message"] = message
    return out


def cli_error(run_dir: Path, last_lines: int = 5) -> str:
    """What the CLI said when it failed: from its last 'error:' line to the end, verbatim
    (for the metrics' exit 3: which weight file to put in which folder); without such a line,
    its last `last_lines` lines of text."""
    text = rundir.tail(run_dir / PROGRESS_FILE, lines=120)
    lines = [ln for ln in text.splitlines() if not ln.startswith("{")]
    starts = [i for i, ln in enumerate(lines) if ln.startswith("error: ")]
    if not starts:
        return "\n".join(lines[-last_lines:]).strip() if last_lines else ""
    found = lines[starts[-1] :]
    found[0] = found[0].removeprefix("error: ")
    return "\n".join(found).strip()


def read_json_result(run_dir: Path) -> dict | None:
    try:
        return json.loads((run_dir / RESULT_FILE).read_text())
    except (OSError, ValueError):
        return None


ACTIVE = ("queued", "running")


def request_key(doc: Mapping[str, Any]) -> str:
    """A digest of what a run was asked for: the same request while one is active is a twin."""
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()


def active_twin(session: Session, model: Any, snapshot_id: int, key: str) -> Any:
    """The queued or running run of `model` with the same request on the same snapshot."""
    q = select(model).where(
        model.snapshot_id == snapshot_id, model.request_key == key, model.state.in_(ACTIVE)
    )
    return session.scalar(q)


def run_folder(snap: Snapshot, settings: Settings, kind: str, run_id: int) -> Path:
    """runs/JOB_ID/KIND/RUN_ID (-N when a former database left files there)."""
    base = Path(snap.job.run_dir) if snap.job.run_dir else settings.runs_dir / str(snap.job_id)
    path, n = base / kind / str(run_id), 1
    while path.exists() and any(path.iterdir()):
        path, n = base / kind / f"{run_id}-{n}", n + 1
    path.mkdir(parents=True, exist_ok=True)
    return path


def _set_state(session: Session, model: Any, run_id: int, expect: tuple[str, ...],
               **values: Any) -> bool:  # fmt: skip
    res = session.execute(
        update(model).where(model.id == run_id, model.state.in_(expect)).values(**values)
    )
    session.commit()
    return res.rowcount == 1


def cancel_run(
    session: Session, get_run: Callable[[Session, int], Any], run_id: int, user: User,
    what: str, action: str,
) -> Any:  # fmt: skip
    """A queued run is cancelled at once; a running one gets SIGTERM (its CLI removes its
    temporary files and exits 4) and the follower records 'cancelled'. Repeats are harmless.
    `what` names the run in messages ("metric run"), `action` is the audit action."""
    run = get_run(session, run_id)
    model, now = type(run), utcnow()
    if run.state == "queued":
        if not _set_state(session, model, run_id, ("queued",), state="cancelled",
                          cancel_requested_at=now, finished_at=now):  # fmt: skip
            return cancel_run(session, get_run, run_id, user, what, action)  # started meanwhile
    elif run.state == "running":
        if run.cancel_requested_at is not None:
            return run
        if not _set_state(session, model, run_id, ("running",), cancel_requested_at=now):
            return cancel_run(session, get_run, run_id, user, what, action)
        run = get_run(session, run_id)
        # No pid nor scheduler id only while the follower is starting it; it stops it after.
        stop_launch(run.pid, run.scheduler_id, run.run_dir)
    elif run.state == "cancelled":
        return run
    else:
        raise Conflict(f"{what} {run_id} already {run.state}; there is nothing to cancel")
    target = f"{what.replace(' ', '_')}:{run_id}"
    session.add(AuditEvent(user_id=user.id, action=action, target=target))
    session.commit()
    return get_run(session, run_id)


class RunFollower:
    """Starts and follows the runs of one table; the job monitor calls `tick` once per pass."""

    model: Any  # the ORM class of the runs
    name = "runs"
    what = "run"  # for messages: "could not start the {what}"
    cancel_grace_s = 120  # SIGKILL this long after SIGTERM
    interrupted = "interrupted: the process is gone and it wrote no result; start it again"

    def __init__(self, settings: Settings):
        self.settings = settings
        self.python = commands.python_for(settings.python_executable)
        self.executor = make_executor(settings)  # local processes or a scheduler's jobs
        self._offsets: dict[int, int] = {}  # run id -> bytes of the progress file read

    # What a kind of run says about itself.
    def argv(self, run: Any) -> list[str]:
        """The command, one process (`python -m trainer ...`)."""
        raise NotImplementedError

    def resources(self, run: Any) -> Resources:
        """What it asks a scheduler for: the GPU its options name, else CPUs."""
        device = str((run.options or {}).get("device", "cpu"))
        return Resources(gpus=1 if device.startswith("cuda") else 0)

    def max_running(self) -> int:
        return 1

    def read_result(self, folder: Path) -> dict | None:
        return read_json_result(folder)

    def failure(self, run: Any, code: int, folder: Path) -> str:
        said = cli_error(folder)
        return processes.describe_exit(code) + (f": {said}" if said else "")

    # The one mechanism.
    def tick(self, session: Session, start: bool = True) -> None:
        q = select(self.model).where(self.model.state == "running")
        self.executor.refresh()
        for run in session.scalars(q).all():
            self._follow(session, run)
        if start:
            self._start_queued(session)

    def _follow(self, session: Session, run: Any) -> None:
        self._import_progress(run)
        status = self.executor.check(run.id, run.pid, run.scheduler_id, run.run_dir)
        if not status.exited:
            run.scheduler_state = status.waiting
            self._escalate_cancel(run)
            session.commit()
            return
        self._import_progress(run)  # what it wrote while exiting
        self._finish(session, run, status.code, status.words)

    def _import_progress(self, run: Any) -> None:
        path = Path(run.run_dir) / PROGRESS_FILE
        rows, self._offsets[run.id] = rundir.read_new_stats(path, self._offsets.get(run.id, 0))
        if rows:
            run.progress = merge_progress(run.progress, rows)

    def _escalate_cancel(self, run: Any) -> None:
        asked = run.cancel_requested_at
        if (
            asked
            and (run.pid or run.scheduler_id)
            and (utcnow() - asked).total_seconds() > self.cancel_grace_s
        ):
            log.warning("%s %s ignored SIGTERM for %ss: SIGKILL", self.what, run.id,
                        self.cancel_grace_s)  # fmt: skip
            self.executor.kill(run.pid, run.scheduler_id)

    def _outcome(self, run: Any, code: int | None, ended: str | None = None) -> dict[str, Any]:
        """The row's final values from the exit code, the result file and the CLI's stderr."""
        folder = Path(run.run_dir)
        result = self.read_result(folder) if code in (0, None) else None
        if result is not None:
            return {"state": "completed", "result": result, "error": None}
        killed = (None, EXIT_CANCELLED, -signal.SIGTERM, -signal.SIGKILL)
        if run.cancel_requested_at is not None and code in killed:
            return {"state": "cancelled", "error": None}
        if ended:  # the scheduler ended it (time limit, memory, node failure)
            return {"state": "failed", "error": f"{ended}; start it again"}
        if code is None:  # exited while no app followed it: its own words, if it left any
            return {"state": "failed", "error": cli_error(folder, last_lines=0) or self.interrupted}
        if code == 0:
            return {"state": "failed", "error": f"the {self.what} finished without {RESULT_FILE}"}
        return {"state": "failed", "error": self.failure(run, code, folder)}

    def _finish(self, session: Session, run: Any, code: int | None, ended: str | None = None
                ) -> None:  # fmt: skip
        values = self._outcome(run, code, ended)
        session.execute(
            update(self.model)
            .where(self.model.id == run.id, self.model.state == "running")
            .values(exit_code=code, finished_at=utcnow(), progress=run.progress,
                    scheduler_state=None, **values)
        )  # fmt: skip
        session.commit()
        self.executor.forget(run.id)
        self._offsets.pop(run.id, None)
        log.info("%s %s %s (%s)", self.what, run.id, values["state"], processes.describe_exit(code))

    def _start_queued(self, session: Session) -> None:
        running = session.scalar(select(func.count()).where(self.model.state == "running")) or 0
        free = self.max_running() - running
        if free <= 0:
            return
        q = select(self.model).where(self.model.state == "queued").order_by(self.model.id)
        for run in session.scalars(q.limit(free)).all():
            self._launch(session, run)

    def _set(self, session: Session, run_id: int, **values: Any) -> None:
        session.execute(update(self.model).where(self.model.id == run_id).values(**values))
        session.commit()

    def _launch(self, session: Session, run: Any) -> None:
        claimed = session.execute(
            update(self.model)
            .where(self.model.id == run.id, self.model.state == "queued")
            .values(state="running", pid=None, scheduler_id=None, started_at=utcnow())
        )
        session.commit()
        if claimed.rowcount != 1:
            return  # cancelled meanwhile
        session.refresh(run)
        try:
            launch = Launch(key=run.id, argv=self.argv(run), run_dir=Path(run.run_dir),
                            name=f"{self.name}-{run.id}", resources=self.resources(run),
                            log_name=None, stderr_name=PROGRESS_FILE)  # fmt: skip
            started = self.executor.launch(launch)
        except (OSError, SubmitFailed) as exc:
            self._set(session, run.id, state="failed", finished_at=utcnow(),
                      error=f"could not start the {self.what}: {exc}")  # fmt: skip
            return
        sent = "submitted to the cluster" if started.scheduler_id else None
        self._set(session, run.id, pid=started.pid, scheduler_id=started.scheduler_id,
                  scheduler_state=sent)  # fmt: skip
        session.refresh(run)
        if run.cancel_requested_at is not None:  # cancelled while we were starting it
            self.executor.stop(run.pid, run.scheduler_id, run.run_dir)
        log.info("%s %s started: %s", self.what, run.id, started.scheduler_id or started.pid)
