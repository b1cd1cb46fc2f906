"""Metric runs (`python -m trainer metrics`), followed by the app's one background-run follower.

What is particular to metrics: the command line (with the feature-extractor settings and a
lower CPU priority), how many run at once, the per-sample memorisation arrays left in the
result file, and exit 3, whose message (which weight file goes where) stands alone.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from app.models import MetricRun
from app.services.background_runs import (  # noqa: F401  (re-exported for callers and tests)
    PROGRESS_FILE,
    RESULT_FILE,
    RunFollower,
    cli_error,
    merge_progress,
    read_json_result,
)
from app.services.evaluation.metric_runs import ADVANCED
from app.settings import Settings
from app.trainer_client import commands

EXIT_WEIGHTS = 3  # `python -m trainer metrics`: a weight file is missing
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


def read_result(run_dir: Path) -> dict | None:
    """The CLI's result object; per-sample arrays stay in the file, out of the database."""
    result = read_json_result(run_dir)
    if result is None:
        return None
    memorization = result.get("metrics", {}).get("memorization")
    if isinstance(memorization, dict) and memorization.pop("per_sample", None) is not None:
        result["per_sample_file"] = str(run_dir / RESULT_FILE)
    return result


class MetricRunFollower(RunFollower):
    model = MetricRun
    name = "metric runs"
    what = "metrics"
    cancel_grace_s = 120
    interrupted = INTERRUPTED

    def argv(self, run: MetricRun) -> list[str]:
        return metrics_argv(self.python, self.settings, run)

    def max_running(self) -> int:
        return self.settings.max_concurrent_metric_runs

    def read_result(self, folder: Path) -> dict | None:
        return read_result(folder)

    def failure(self, run: MetricRun, code: int, folder: Path) -> str:
        if code == EXIT_WEIGHTS:
            return cli_error(folder)
        return super().failure(run, code, folder)
