"""Reading what the trainer writes into a run directory (never writing there)."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

# snapshot-KKKKKK.pt (whole kimg) or snapshot-KKKKKK-NNNNNNNNN.pt (kimg and images shown:
# names that cannot collide for runs shorter than 1 kimg)
SNAPSHOT_RE = re.compile(r"^snapshot-(\d+)(?:-(\d+))?\.pt$")


def read_new_stats(path: Path, offset: int) -> tuple[list[dict[str, Any]], int]:
    """Complete JSON lines after byte `offset`; a half-written line waits."""
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            data = f.read()
    except OSError:
        return [], offset
    end = data.rfind(b"\n")
    if end < 0:
        return [], offset
    rows = []
    for line in data[: end + 1].splitlines():
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if isinstance(row, dict):
            rows.append(row)
    return rows, offset + end + 1


def read_all_stats(run_dir: str) -> list[dict[str, Any]]:
    return read_new_stats(Path(run_dir) / "stats.jsonl", 0)[0]


def _json_dict(path: Path) -> dict[str, Any] | None:
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) else None


def read_progress(run_dir: str) -> dict[str, Any] | None:
    """The trainer's per-step progress.json (written between ticks), or None."""
    return _json_dict(Path(run_dir) / "progress.json")


def read_exit_record(run_dir: str) -> dict[str, Any] | None:
    """The trainer's exit.json (code, reason, signal): how a launch ended when no parent saw it."""
    return _json_dict(Path(run_dir) / "exit.json")


def read_options(run_dir: str) -> dict[str, Any]:
    """options.json: the run's whole configuration as the trainer wrote it ({} if none)."""
    try:
        doc = json.loads((Path(run_dir) / "options.json").read_text())
    except (OSError, ValueError):
        return {}
    return doc if isinstance(doc, dict) else {}


def snapshot_nimg(name: str) -> int | None:
    """Images shown at a snapshot, from its file name (whole kimg × 1000 for old names)."""
    m = SNAPSHOT_RE.match(name)
    if not m:
        return None
    return int(m.group(2)) if m.group(2) else int(m.group(1)) * 1000


def snapshot_files(run_dir: str) -> Iterator[tuple[int, Path]]:
    """(images shown, path) of every complete snapshot, oldest first (temporary files never
    match the pattern)."""
    try:
        names = os.listdir(run_dir)
    except OSError:
        return
    found = [(snapshot_nimg(n), n) for n in names if SNAPSHOT_RE.match(n)]
    for nimg, name in sorted(found, key=lambda t: (t[0], t[1])):
        yield nimg, Path(run_dir) / name  # type: ignore[misc]


def samples_for(snapshot: Path) -> Path:
    """The sample grid written with a snapshot."""
    return snapshot.with_name(snapshot.name.replace("snapshot-", "samples-", 1)[:-3] + ".png")


def latest_samples(run_dir: str) -> Path | None:
    if not run_dir:
        return None
    grids = sorted(Path(run_dir).glob("samples-*.png"), key=lambda p: p.stat().st_mtime_ns)
    return grids[-1] if grids else None


def tail(path: Path, lines: int = 40, max_bytes: int = 64 * 1024) -> str:
    """The last lines of a log file (read from the end, so a huge log costs nothing)."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - max_bytes))
            data = f.read()
    except OSError:
        return ""
    return "\n".join(data.decode(errors="replace").splitlines()[-lines:])


def disk_usage(run_dir: str) -> int:
    """Bytes under a run directory (snapshots, grids, logs, metric runs)."""
    total = 0
    for root, _, files in os.walk(run_dir):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_size
            except OSError:
                continue
    return total


def last_error_line(run_dir: str) -> str:
    """The most telling line of a failed trainer's output: its last 'Error' line, else the
    last line (worker.log, else log.txt)."""
    folder = Path(run_dir)
    text = tail(folder / "worker.log", lines=60) or tail(folder / "log.txt", lines=60)
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    for ln in reversed(lines):
        if "Error" in ln or "error:" in ln:
            return ln[:500]
    return lines[-1][:500] if lines else ""
