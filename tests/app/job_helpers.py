"""Shared pieces of the training-job tests: a tiny dataset, the tiny trainer config, waiting."""

from __future__ import annotations

import io
import json
import os
import signal
import time
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from app.db import session_scope
from app.models import DatasetVersion
from app.settings import Settings

# 16×16, a few thousand parameters: one tick of 16 images takes about a second on one CPU core.
TINY = {
    "resolution": 16, "batch": 4, "cbase": 64, "cmax": 16, "zdim": 32, "tick": 0.016,
    "snap": 1, "aug": "ada", "target": 0.6, "seed": 0,
}  # fmt: skip


def write_zip(path: Path, n: int = 16, res: int = 16, tumour_every: int = 2) -> None:
    """A StyleGAN2-ADA zip: 8-bit L PNGs, dataset.json labels, medsynth.json with a window."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:res, :res]
    labels = []
    with zipfile.ZipFile(path, "w") as zf:
        for i in range(n):
            disc = ((yy - res / 2) ** 2 + (xx - res / 2) ** 2) < (res / 3) ** 2
            img = (disc * 150 + rng.normal(0, 20, (res, res))).clip(0, 255).astype(np.uint8)
            buf = io.BytesIO()
            Image.fromarray(img, "L").save(buf, "PNG")
            name = f"img{i:08d}.png"
            zf.writestr(name, buf.getvalue())
            labels.append([name, 1 if tumour_every and i % tumour_every == 0 else 0])
        zf.writestr("dataset.json", json.dumps({"labels": labels}))
        zf.writestr("medsynth.json", json.dumps({"window": "liver", "bit_depth": 8}))


def make_dataset(
    sessions: Any, settings: Settings, n: int = 16, res: int = 16, tumour_every: int = 2
) -> int:
    """A DatasetVersion row with its zip, as the curation app would have frozen it."""
    with session_scope(sessions) as session:
        ds = DatasetVersion(
            name=f"tiny-{res}", resolution=res, window="liver", window_width=150,
            window_level=30, bit_depth=8, content_hash="0" * 64, num_images=n,
            num_tumour=len(range(0, n, tumour_every)) if tumour_every else 0,
        )  # fmt: skip
        session.add(ds)
        session.flush()
        path = settings.datasets_dir / f"dataset-{ds.id}.zip"
        write_zip(path, n, res, tumour_every)
        ds.zip_path = str(path)
        return ds.id


def wait_for(
    check: Callable[[], Any], timeout: float = 180.0, what: str = "condition", every=0.2
) -> Any:
    """Poll until check() returns something truthy; fail with `what` after `timeout` s."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what} (last: {last!r})")


def trainer_pids(runs_dir: Path) -> list[int]:
    """Processes whose command line mentions the trainer and this test's runs folder."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmd = (entry / "cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        if "trainer" in cmd and str(runs_dir) in cmd:
            pids.append(int(entry.name))
    return pids


def kill_trainers(runs_dir: Path) -> None:
    """Test teardown: no trainer of this test may outlive it."""
    for pid in trainer_pids(runs_dir):
        try:
            os.killpg(pid, signal.SIGKILL)
        except OSError:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
