"""Utility-run processes, followed from the job monitor's thread like metric runs.

Each tick: import new progress lines, reap finished processes and record their outcome, and
start a queued run when none runs (at a lower CPU priority, like metric runs). A run whose
process is gone after an app restart is closed: completed if it wrote its result, else failed.
"""

from __future__ import annotations

import json
import logging
import shutil
import signal
import subprocess
from pathlib import Path
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from app.models import UtilityRun, utcnow
from app.services.evaluation.metric_monitor import cli_error, merge_progress
from app.services.utility.runs import PROGRESS_FILE, RESULT_FILE
from app.settings import Settings
from app.trainer_client import commands, processes, rundir

log = logging.getLogger(__name__)
CANCEL_GRACE_S = 60  # SIGKILL this long after SIGTERM (the CLI stops within one step)
EXIT_CANCELLED = 4
MAX_RUNNING = 1  # utility runs train many small networks: one at a time
INTERRUPTED = (
    "interrupted: the utility process is gone (the app or the machine restarted while it "
    "ran) and it wrote no result; start the run again"
)


def utility_argv(python: str, settings: Settings, run: UtilityRun) -> list[str]:
    """The command line of one run; its run folder is in it, so /proc recognises it."""
    o = run.options
    argv = commands.utility_argv(
        python, "--snapshot", run.snapshot.path, train=o["train_zip"], test=o["test_zip"],
        task=run.task, arms=o["arms"], fractions=o["fractions"], seeds=o["seeds"],
        steps=o["steps"], res=o.get("res"), device=o["device"],
        workdir=run.run_dir, out=str(Path(run.run_dir) / RESULT_FILE), progress_json=True,
    )  # fmt: skip
    if settings.metric_run_nice > 0 and shutil.which("nice"):
        argv = ["nice", "-n", str(settings.metric_run_nice), *argv]  # same pid after exec
    return argv


def spawn(argv: list[str], run_dir: Path) -> subprocess.Popen:
    return processes.spawn(argv, run_dir, log_name=None, stderr_name=PROGRESS_FILE)


def read_result(run_dir: Path) -> dict | None:
    try:
        return json.loads((run_dir / RESULT_FILE).read_text())
    except (OSError, ValueError):
        return None


class UtilityRunFollower:
    """Starts and follows utility runs; the job monitor calls `tick` once per pass."""

    name = "utility runs"

    def __init__(self, settings: Settings):
        self.settings = settings
        self.python = commands.python_for(settings.python_executable)
        self._procs = processes.ProcessFollower()  # by utility run id
        self._offsets: dict[int, int] = {}

    def tick(self, session: Session, start: bool = True) -> None:
        for run in session.scalars(select(UtilityRun).where(UtilityRun.state == "running")).all():
            self._follow(session, run)
        if start:
            self._start_queued(session)

    def _follow(self, session: Session, run: UtilityRun) -> None:
        self._import_progress(run)
        exited, code = self._procs.check(run.id, run.pid, run.run_dir)
        if not exited:
            asked = run.cancel_requested_at
            if asked and run.pid and (utcnow() - asked).total_seconds() > CANCEL_GRACE_S:
                processes.signal_group(run.pid, signal.SIGKILL)
            session.commit()
            return
        self._import_progress(run)
        self._finish(session, run, code)

    def _import_progress(self, run: UtilityRun) -> None:
        path = Path(run.run_dir) / PROGRESS_FILE
        rows, self._offsets[run.id] = rundir.read_new_stats(path, self._offsets.get(run.id, 0))
        if rows:
            run.progress = merge_progress(run.progress, rows)

    def _outcome(self, run: UtilityRun, code: int | None) -> dict[str, Any]:
        folder = Path(run.run_dir)
        result = read_result(folder) if code in (0, None) else None
        if result is not None:
            return {"state": "completed", "result": result, "error": None}
        killed = (None, EXIT_CANCELLED, -signal.SIGTERM, -signal.SIGKILL)
        if run.cancel_requested_at is not None and code in killed:
            return {"state": "cancelled", "error": None}
        if code is None:
            return {"state": "failed", "error": cli_error(folder, last_lines=0) or INTERRUPTED}
        said = cli_error(folder)
        return {"state": "failed",
                "error": processes.describe_exit(code) + (f": {said}" if said else "")}  # fmt: skip

    def _finish(self, session: Session, run: UtilityRun, code: int | None) -> None:
        values = self._outcome(run, code)
        session.execute(
            update(UtilityRun)
            .where(UtilityRun.id == run.id, UtilityRun.state == "running")
            .values(exit_code=code, finished_at=utcnow(), progress=run.progress, **values)
        )
        session.commit()
        self._procs.forget(run.id)
        self._offsets.pop(run.id, None)
        log.info("utility run %s %s (%s)", run.id, values["state"], processes.describe_exit(code))

    def _start_queued(self, session: Session) -> None:
        running = session.scalar(select(func.count()).where(UtilityRun.state == "running")) or 0
        if running >= MAX_RUNNING:
            return
        q = select(UtilityRun).where(UtilityRun.state == "queued").order_by(UtilityRun.id)
        for run in session.scalars(q.limit(MAX_RUNNING - running)).all():
            self._launch(session, run)

    def _launch(self, session: Session, run: UtilityRun) -> None:
        claimed = session.execute(
            update(UtilityRun)
            .where(UtilityRun.id == run.id, UtilityRun.state == "queued")
            .values(state="running", pid=None, started_at=utcnow())
        )
        session.commit()
        if claimed.rowcount != 1:
            return  # cancelled meanwhile
        session.refresh(run)
        try:
            proc = spawn(utility_argv(self.python, self.settings, run), Path(run.run_dir))
        except OSError as exc:
            session.execute(update(UtilityRun).where(UtilityRun.id == run.id).values(
                state="failed", error=f"could not start the utility run: {exc}",
                finished_at=utcnow()))  # fmt: skip
            session.commit()
            return
        self._procs.started(run.id, proc)
        session.execute(update(UtilityRun).where(UtilityRun.id == run.id).values(pid=proc.pid))
        session.commit()
        session.refresh(run)
        if run.cancel_requested_at is not None:
            processes.signal_group(proc.pid, signal.SIGTERM)
        log.info("utility run %s started: pid %s", run.id, proc.pid)
