"""Metric-run processes, followed from the job monitor's thread (one mechanism for both).

Each tick: import new progress lines, reap finished processes and record their outcome, and
start queued runs while fewer than `max_concurrent_metric_runs` run (at a lower CPU priority,
so a training job on the same machine keeps its pace). A run whose process is gone after an
app restart is closed: completed if it wrote its result, otherwise failed ("interrupted").
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

from app.models import MetricRun, utcnow
from app.services.evaluation.metric_runs import ADVANCED, PROGRESS_FILE, RESULT_FILE
from app.settings import Settings
from app.trainer_client import commands, processes, rundir

log = logging.getLogger(__name__)
CANCEL_GRACE_S = 120  # SIGKILL a metrics process this long after SIGTERM
EXIT_WEIGHTS, EXIT_CANCELLED = 3, 4  # `python -m trainer metrics` exit codes
INTERRUPTED = (
    "interrupted: the metrics process is gone (the app or the machine restarted while it "
    "ran) and it wrote no result; start the run again"
)


def metrics_argv(python: str, settings: Settings, run: MetricRun) -> list[str]:
    """The command line of one run (built by the trainer client)."""
    return commands.metrics_argv(
        python, run.snapshot.path, run.options, run.metrics, run.run_dir, RESULT_FILE, ADVANCED,
        settings.metrics_extractor_module, settings.metrics_feature_extractor,
        settings.metric_run_nice if shutil.which("nice") else 0,
    )  # fmt: skip


def spawn(argv: list[str], run_dir: Path) -> subprocess.Popen:
    """Start the CLI in its own session; stdout discarded, stderr is the progress file."""
    return processes.spawn(argv, run_dir, log_name=None, stderr_name=PROGRESS_FILE)


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
    (for exit 3: which weight file to put in which folder, with its hash and URL); without
    such a line, its last `last_lines` lines of text."""
    text = rundir.tail(run_dir / PROGRESS_FILE, lines=120)
    lines = [ln for ln in text.splitlines() if not ln.startswith("{")]
    starts = [i for i, ln in enumerate(lines) if ln.startswith("error: ")]
    if not starts:
        return "\n".join(lines[-last_lines:]).strip() if last_lines else ""
    found = lines[starts[-1] :]
    found[0] = found[0].removeprefix("error: ")
    return "\n".join(found).strip()


def read_result(run_dir: Path) -> dict | None:
    """The CLI's result object; per-sample arrays stay in the file, out of the database."""
    try:
        result = json.loads((run_dir / RESULT_FILE).read_text())
    except (OSError, ValueError):
        return None
    memorization = result.get("metrics", {}).get("memorization")
    if isinstance(memorization, dict) and memorization.pop("per_sample", None) is not None:
        result["per_sample_file"] = str(run_dir / RESULT_FILE)
    return result


class MetricRunFollower:
    """Starts and follows metric runs; the job monitor calls `tick` once per pass."""

    name = "metric runs"

    def __init__(self, settings: Settings):
        self.settings = settings
        self.python = commands.python_for(settings.python_executable)
        self._procs = processes.ProcessFollower()  # by metric run id
        self._offsets: dict[int, int] = {}  # run id -> bytes of the progress file read

    def tick(self, session: Session, start: bool = True) -> None:
        q = select(MetricRun).where(MetricRun.state == "running")
        for run in session.scalars(q).all():
            self._follow(session, run)
        if start:
            self._start_queued(session)

    def _follow(self, session: Session, run: MetricRun) -> None:
        self._import_progress(run)
        exited, code = self._check_process(run)
        if not exited:
            self._escalate_cancel(run)
            session.commit()
            return
        self._import_progress(run)  # what it wrote while exiting
        self._finish(session, run, code)

    def _import_progress(self, run: MetricRun) -> None:
        path = Path(run.run_dir) / PROGRESS_FILE
        rows, self._offsets[run.id] = rundir.read_new_stats(path, self._offsets.get(run.id, 0))
        if rows:
            run.progress = merge_progress(run.progress, rows)

    def _check_process(self, run: MetricRun) -> tuple[bool, int | None]:
        """(exited, exit code or None when it was not our child to reap)."""
        return self._procs.check(run.id, run.pid, run.run_dir)

    def _escalate_cancel(self, run: MetricRun) -> None:
        asked = run.cancel_requested_at
        if asked and run.pid and (utcnow() - asked).total_seconds() > CANCEL_GRACE_S:
            log.warning("metric run %s ignored SIGTERM for %ss: SIGKILL", run.id, CANCEL_GRACE_S)
            processes.signal_group(run.pid, signal.SIGKILL)

    def _outcome(self, run: MetricRun, code: int | None) -> dict[str, Any]:
        """The row's final values from the exit code, the result file and the CLI's stderr."""
        folder = Path(run.run_dir)
        result = read_result(folder) if code in (0, None) else None
        if result is not None:
            return {"state": "completed", "result": result, "error": None}
        killed = (None, EXIT_CANCELLED, -signal.SIGTERM, -signal.SIGKILL)
        if run.cancel_requested_at is not None and code in killed:
            return {"state": "cancelled", "error": None}
        if code is None:  # exited while no app followed it: its own words, if it left any
            said = cli_error(folder, last_lines=0)
            return {"state": "failed", "error": said or INTERRUPTED}
        if code == 0:
            return {"state": "failed", "error": f"the metrics finished without {RESULT_FILE}"}
        said = cli_error(folder)
        if code != EXIT_WEIGHTS:  # exit 3's message stands alone: which file goes where
            said = processes.describe_exit(code) + (f": {said}" if said else "")
        return {"state": "failed", "error": said}

    def _finish(self, session: Session, run: MetricRun, code: int | None) -> None:
        values = self._outcome(run, code)
        session.execute(
            update(MetricRun)
            .where(MetricRun.id == run.id, MetricRun.state == "running")
            .values(exit_code=code, finished_at=utcnow(), progress=run.progress, **values)
        )
        session.commit()
        self._procs.forget(run.id)
        self._offsets.pop(run.id, None)
        log.info("metric run %s %s (%s)", run.id, values["state"], processes.describe_exit(code))

    def _start_queued(self, session: Session) -> None:
        q = select(func.count()).where(MetricRun.state == "running")
        free = self.settings.max_concurrent_metric_runs - (session.scalar(q) or 0)
        if free <= 0:
            return
        q = select(MetricRun).where(MetricRun.state == "queued").order_by(MetricRun.id)
        for run in session.scalars(q.limit(free)).all():
            self._launch(session, run)

    def _launch(self, session: Session, run: MetricRun) -> None:
        claimed = session.execute(
            update(MetricRun)
            .where(MetricRun.id == run.id, MetricRun.state == "queued")
            .values(state="running", pid=None, started_at=utcnow())
        )
        session.commit()
        if claimed.rowcount != 1:
            return  # cancelled meanwhile
        session.refresh(run)
        try:
            proc = spawn(metrics_argv(self.python, self.settings, run), Path(run.run_dir))
        except OSError as exc:
            session.execute(
                update(MetricRun)
                .where(MetricRun.id == run.id)
                .values(state="failed", error=f"could not start the metrics: {exc}",
                        finished_at=utcnow())
            )  # fmt: skip
            session.commit()
            return
        self._procs.started(run.id, proc)
        session.execute(update(MetricRun).where(MetricRun.id == run.id).values(pid=proc.pid))
        session.commit()
        session.refresh(run)
        if run.cancel_requested_at is not None:  # cancelled while we were spawning
            processes.signal_group(proc.pid, signal.SIGTERM)
        log.info("metric run %s started: pid %s", run.id, proc.pid)
