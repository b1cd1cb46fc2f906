"""Utility runs (`python -m trainer utility`), followed by the app's one background-run follower.

Particular to utility runs: the command line (at a lower CPU priority, like metric runs) and
one run at a time (each trains many small networks).
"""

from __future__ import annotations

import shutil
from pathlib import Path

from app.models import UtilityRun
from app.services.background_runs import RESULT_FILE, RunFollower
from app.settings import Settings
from app.trainer_client import commands

CANCEL_GRACE_S = 60  # SIGKILL this long after SIGTERM (the CLI stops within one step)
MAX_RUNNING = 1  # utility runs train many small networks: one at a time
INTERRUPTED = (
    "interrupted: the utility process is gone (the app or the machine restarted while it "
    "ran) and it wrote no result; start the run again"
)


def utility_argv(python: str, settings: Settings, run: UtilityRun) -> list[str]:
    """The command line of one run; its run folder is in it, so the follower recognises the
    process after a restart."""
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


class UtilityRunFollower(RunFollower):
    model = UtilityRun
    name = "utility runs"
    what = "utility run"
    cancel_grace_s = CANCEL_GRACE_S
    interrupted = INTERRUPTED

    def argv(self, run: UtilityRun) -> list[str]:
        return utility_argv(self.python, self.settings, run)

    def max_running(self) -> int:
        return MAX_RUNNING
