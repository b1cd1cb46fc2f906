"""Thumbnails of a run's closest (generated, training) pairs, made once per run on first view:
the generated image through the snapshot generation path (same seed, class and truncation as
the metrics used), the training image read from the dataset zip by its name."""

from __future__ import annotations

import fcntl
import io
import shutil
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from app.errors import InvalidInput, NotFound
from app.models import MetricRun
from app.services.training.snapshots import generate
from app.settings import Settings

WHICH = ("generated", "real")


def top_pairs(run: MetricRun) -> list[dict[str, Any]]:
    memorization = ((run.result or {}).get("metrics") or {}).get("memorization") or {}
    return list(memorization.get("top_pairs") or [])


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    """One maker at a time per run (a page asks for all thumbnails at once)."""
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _make_generated(settings: Settings, run: MetricRun, pairs: list[dict], folder: Path) -> None:
    trunc = float(((run.result or {}).get("options") or {}).get("truncation_psi", 1.0))
    by_class: dict[int | None, list[int]] = {}
    for k, pair in enumerate(pairs):
        if not (folder / f"generated-{k}.png").is_file():
            by_class.setdefault(pair.get("class"), []).append(k)
    for cls, ks in by_class.items():
        seeds = ",".join(str(pairs[k]["seed"]) for k in ks)
        gen = generate(settings, run.snapshot, seeds, trunc, cls, "png")
        try:
            for k in ks:
                shutil.move(gen.folder / f"seed{pairs[k]['seed']:04d}.png",
                            folder / f"generated-{k}.png")  # fmt: skip
        finally:
            shutil.rmtree(gen.folder, ignore_errors=True)


def _as_8bit_png(data: bytes) -> bytes:
    """A training PNG as the metrics saw it: 16-bit pixels scaled by 255/65535."""
    img = Image.open(io.BytesIO(data))
    if img.mode in ("I;16", "I;16B", "I"):
        arr = np.asarray(img, dtype=np.float64) / 257.0
        img = Image.fromarray(arr.round().clip(0, 255).astype(np.uint8), "L")
    out = io.BytesIO()
    img.save(out, "PNG")
    return out.getvalue()


def _make_reals(run: MetricRun, pairs: list[dict], folder: Path) -> None:
    todo = [k for k in range(len(pairs)) if not (folder / f"real-{k}.png").is_file()]
    if not todo:
        return
    try:
        with zipfile.ZipFile(run.options["data"]) as zf:
            for k in todo:
                data = zf.read(pairs[k]["real_name"])
                (folder / f"real-{k}.png").write_bytes(_as_8bit_png(data))
    except (OSError, KeyError, zipfile.BadZipFile) as exc:
        msg = f"the training image cannot be read from {run.options['data']}: {exc}"
        raise NotFound(msg) from exc


def ensure_thumbnails(settings: Settings, run: MetricRun) -> list[dict[str, Any]]:
    """The run's top pairs, each with `k`; their thumbnails exist when this returns."""
    pairs = top_pairs(run)
    if pairs:
        folder = Path(run.run_dir) / "pairs"
        folder.mkdir(parents=True, exist_ok=True)
        with _locked(folder / ".lock"):
            _make_generated(settings, run, pairs, folder)
            _make_reals(run, pairs, folder)
    return [{**pair, "k": k} for k, pair in enumerate(pairs)]


def thumbnail(settings: Settings, run: MetricRun, k: int, which: str) -> Path:
    """One thumbnail file (made with the others on first request)."""
    if which not in WHICH or not 0 <= k < len(top_pairs(run)):
        raise NotFound(f"metric run {run.id} has no pair image {k}/{which}")
    try:
        ensure_thumbnails(settings, run)
    except InvalidInput as exc:  # the generate command failed (snapshot file gone, ...)
        raise NotFound(f"the generated image cannot be made: {exc.detail}") from exc
    return Path(run.run_dir) / "pairs" / f"{which}-{k}.png"
