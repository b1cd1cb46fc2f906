"""Former home of the trainer's command line and process handling, now app/trainer_client.

Only names other modules still import are left here, as aliases; new code imports
app.trainer_client directly.
"""

from __future__ import annotations

from app.trainer_client.commands import ROOT, python_for
from app.trainer_client.processes import (
    Devices,
    ProcessFollower,
    describe_exit,
    detect_devices,
    kill_tree,
    request_stop,
    signal_group,
    try_reap,
)
from app.trainer_client.processes import descendants as _descendants
from app.trainer_client.processes import is_ours as is_our_trainer
from app.trainer_client.rundir import (
    SNAPSHOT_RE,
    latest_samples,
    read_all_stats,
    read_new_stats,
    snapshot_files,
    tail,
)

ChildProcesses = ProcessFollower

__all__ = [
    "ROOT", "SNAPSHOT_RE", "ChildProcesses", "Devices", "ProcessFollower", "_descendants",
    "describe_exit", "detect_devices", "is_our_trainer", "kill_tree", "latest_samples",
    "python_for", "read_all_stats", "read_new_stats", "request_stop", "signal_group",
    "snapshot_files", "tail", "try_reap",
]  # fmt: skip
