"""Short trainer commands the app waits for: info, generate, import-pkl.

One policy for all of them: a timeout per kind, the trainer's stderr logged for the operator,
and a TrainerCallFailed whose message is written for the user (never the trainer's command-line
wording: no flags, no paths).
"""

from __future__ import annotations

import functools
import json
import logging
import os
import re
import subprocess
from pathlib import Path
from typing import Any

from app.trainer_client import commands
from app.trainer_client.commands import ROOT

log = logging.getLogger(__name__)
INFO_TIMEOUT_S = 120
SPEED_TIMEOUT_S = 600  # a few training steps of a big network on a busy CPU
GENERATE_TIMEOUT_S = 1800
IMPORT_TIMEOUT_S = 1800
GENERATE_DEVICE = "cpu"  # web-request generation never takes GPU memory from a training job

# The trainer's own words (stderr) → what a user is told; the first match wins.
_USER_WORDS = (
    ("--class", "this generator is conditional: choose a class (normal or tumour)"),
    ("--hu", "this snapshot has no HU mapping (its dataset had no window); choose PNG instead"),
    ("not found", "the snapshot file is missing"),
    ("not a readable snapshot", "the snapshot file is damaged or not a MedSynth snapshot"),
    ("not a MedSynth snapshot", "the file is not a MedSynth snapshot"),
)
REFUSED = "the checkpoint names code or objects that are not allowed; nothing in it was run"


class TrainerCallFailed(RuntimeError):
    """A trainer command failed; `str()` is for the user, `detail` for the log."""

    def __init__(self, message: str, detail: str = "", timed_out: bool = False):
        super().__init__(message)
        self.detail = detail
        self.timed_out = timed_out


def user_words(stderr: str, fallback: str) -> str:
    """A message for the user from the trainer's stderr: a known case, else `fallback`."""
    lines = [ln for ln in stderr.strip().splitlines() if ln.strip()]
    said = lines[-1].removeprefix("error: ") if lines else ""
    if "refus" in said:  # the restricted unpickler names the global it refused
        name = _refused(said)
        return f"{REFUSED} (refused: {name})" if name else REFUSED
    for marker, words in _USER_WORDS:
        if marker in said:
            return words
    return fallback


def _refused(said: str) -> str:
    """The refused global a restricted unpickler names (e.g. 'posix.system'), if any."""
    m = re.search(r"refused global '?([\w.]+?)'?(?:[:\s,;(]|$)", said)
    return m.group(1) if m else ""


def run(argv: list[str], timeout: float, what: str, env_extra: dict | None = None) -> str:
    """Run one trainer command to its end; its stdout, or TrainerCallFailed."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env_extra or {})}
    try:
        out = subprocess.run(
            argv, cwd=ROOT, capture_output=True, text=True, timeout=timeout, env=env
        )
    except subprocess.TimeoutExpired as exc:
        log.warning("trainer %s timed out after %ss: %s", what, timeout, argv)
        raise TrainerCallFailed(
            f"{what} took longer than {timeout:g} s and was stopped", timed_out=True
        ) from exc
    except OSError as exc:
        raise TrainerCallFailed(f"the trainer could not be started for {what}", str(exc)) from exc
    if out.returncode != 0:
        log.warning("trainer %s failed (exit %s): %s", what, out.returncode, out.stderr[-2000:])
        raise TrainerCallFailed(
            user_words(out.stderr, f"{what} failed; the server log has the details"),
            out.stderr[-4000:],
        )
    return out.stdout


def _json(stdout: str) -> Any:
    lines = [ln for ln in stdout.splitlines() if ln.strip()]
    try:
        return json.loads(lines[-1])
    except (IndexError, ValueError) as exc:
        raise TrainerCallFailed("the trainer gave no answer", stdout[-2000:]) from exc


@functools.lru_cache(maxsize=256)
def defaults(
    python: str,
    res: int,
    gpus: int = 0,
    batch: int | None = None,
    cbase: int | None = None,
    cmax: int | None = None,
    zdim: int | None = None,
) -> dict[str, Any]:
    """A fresh run's options at res² (`info defaults`), cached: they depend on nothing else.
    cbase/cmax/zdim change only the network whose MACs per image are counted."""
    q = ["defaults", "--res", str(res), "--gpus", str(gpus)]
    q += ["--batch", str(batch)] if batch else []
    for flag, value in (("--cbase", cbase), ("--cmax", cmax), ("--zdim", zdim)):
        q += [flag, str(value)] if value else []
    return _json(run(commands.info_argv(python, *q), INFO_TIMEOUT_S, "asking the trainer"))


def speed(python: str, train_flags: list[str]) -> dict[str, Any]:
    """This machine's sec/kimg for a job's network (`info speed`: a few real training steps)."""
    argv = commands.info_argv(python, "speed", *train_flags)
    return _json(run(argv, SPEED_TIMEOUT_S, "measuring this machine's training speed"))


@functools.lru_cache(maxsize=4)
def resume_options(python: str) -> frozenset[str]:
    """The options a `--resume latest` may change."""
    out = _json(run(commands.info_argv(python, "resume-options"), INFO_TIMEOUT_S, "info"))
    return frozenset(out["flags"])


@functools.lru_cache(maxsize=256)
def _snapshot_facts(python: str, path: str, mtime_ns: int, size: int) -> dict[str, Any]:
    return _json(run(commands.info_argv(python, "snapshot", path), INFO_TIMEOUT_S, "reading it"))


def snapshot_facts(python: str, path: str) -> dict[str, Any]:
    """A snapshot's network, options and dataset facts (`info snapshot`), cached per file."""
    try:
        st = Path(path).stat()
    except OSError as exc:
        raise TrainerCallFailed("the snapshot file is missing", str(exc)) from exc
    return _snapshot_facts(python, str(path), st.st_mtime_ns, st.st_size)


def generate(
    python: str,
    snapshot: str,
    seeds: str,
    outdir: Path,
    trunc: float = 1.0,
    class_idx: int | None = None,
    fmt: str = "png",
    timeout: float = GENERATE_TIMEOUT_S,
) -> list[Path]:
    """Images from a snapshot into `outdir` (created); the files written, sorted."""
    argv = commands.generate_argv(
        python, snapshot, seeds.replace(" ", ""), str(outdir), trunc, class_idx, fmt,
        GENERATE_DEVICE,
    )  # fmt: skip
    run(argv, timeout, "generating the images", {"CUDA_VISIBLE_DEVICES": ""})
    return sorted(p for p in outdir.iterdir() if p.is_file())


def import_pkl(python: str, pkl: Path, out: Path, channels: int | None = 1) -> dict[str, Any]:
    """A published .pkl to a snapshot (nothing in the file is executed); its facts."""
    argv = commands.import_pkl_argv(python, str(pkl), str(out), channels)
    run(argv, IMPORT_TIMEOUT_S, "importing the checkpoint", {"CUDA_VISIBLE_DEVICES": ""})
    if not out.is_file():
        raise TrainerCallFailed("the import wrote no snapshot")
    return snapshot_facts(python, str(out))


def snapshot_network(python: str, path: str, run_dir: str) -> dict[str, Any] | None:
    """The network a snapshot holds: the trainer's answer, else the run's options.json
    (a file the trainer cannot read); None when neither knows."""
    try:
        return snapshot_facts(python, path)["network"]
    except TrainerCallFailed:
        from app.trainer_client.rundir import read_options

        net = read_options(run_dir).get("network") or {}
    if not net:
        return None
    return {
        "resolution": net.get("img_resolution"), "channels": net.get("img_channels", 1),
        "c_dim": net.get("c_dim", 0), "zdim": net.get("z_dim"),
        "cbase": net.get("channel_base"), "cmax": net.get("channel_max"),
        "map": net.get("mapping_layers"),
    }  # fmt: skip
