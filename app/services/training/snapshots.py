"""Snapshots: look-up, and images generated on demand by `python -m trainer generate`.

Each generation writes into its own folder under MEDSYNTH_DATA/tmp (named by a random token),
served to the page that asked for it; folders older than an hour are removed.
"""

from __future__ import annotations

import re
import secrets
import shutil
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from sqlalchemy.orm import Session

from app.errors import InvalidInput, NotFound
from app.imaging.render import gray_png
from app.models import Snapshot
from app.settings import Settings
from app.trainer_client import calls, commands

MAX_IMAGES = 256
FORMATS = ("png", "png16", "nifti")
KEEP_S = 3600
_SEEDS = re.compile(r"^\s*\d+(\s*-\s*\d+)?(\s*,\s*\d+(\s*-\s*\d+)?)*\s*$")
_TOKEN = re.compile(r"^gen-[A-Za-z0-9_-]{16,}$")


@dataclass(frozen=True)
class Generated:
    token: str
    folder: Path
    files: list[Path]
    tumour_share: float | None = None  # set when a conditional snapshot used the data's mix

    @property
    def images(self) -> list[Path]:
        """The generated images themselves, without their label maps (seedNNNN.mask.*)."""
        return [f for f in self.files if ".mask." not in f.name]

    def has_mask(self, image: Path) -> bool:
        return image.with_name(image.name.replace(".png", ".mask.png")).is_file()


def get_snapshot(session: Session, snapshot_id: int) -> Snapshot:
    snap = session.get(Snapshot, snapshot_id)
    if snap is None:
        raise NotFound(f"snapshot {snapshot_id} does not exist")
    return snap


def snapshot_file(snap: Snapshot) -> Path:
    path = Path(snap.path)
    if not path.is_file():
        raise NotFound(f"snapshot {snap.id}'s file is missing ({path.name})")
    return path


def count_seeds(text: str) -> int:
    """Validate a seed list like '0-15' or '1,5,7' and count it (without expanding it)."""
    if not text or not _SEEDS.match(text):
        raise InvalidInput(f"seeds: {text!r} is not a seed list like 0-15 or 1,5,7")
    n = 0
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        if hi and int(hi) < int(lo):
            raise InvalidInput(f"seeds: the range {part.strip()} runs backwards")
        n += int(hi) - int(lo) + 1 if hi else 1
    return n  # the per-request cap is the caller's: limits.check_image_count for a person


def _cleanup(tmp_dir: Path) -> None:
    cutoff = time.time() - KEEP_S
    for old in tmp_dir.glob("gen-*"):
        try:
            if old.stat().st_mtime < cutoff:
                shutil.rmtree(old, ignore_errors=True)
        except OSError:
            continue


def generate(
    settings: Settings,
    snap: Snapshot,
    seeds: str,
    trunc: float = 1.0,
    class_idx: int | None = None,
    fmt: str = "png",
) -> Generated:
    """Run the trainer's generate command on a snapshot into a fresh folder."""
    if count_seeds(seeds) > MAX_IMAGES:  # any caller; web requests meet a lower cap first
        raise InvalidInput(f"seeds: at most {MAX_IMAGES} images in one generation")
    if fmt not in FORMATS:
        raise InvalidInput(f"format: must be one of {', '.join(FORMATS)}, not {fmt!r}")
    if not -2.0 <= trunc <= 2.0:
        raise InvalidInput("trunc: truncation ψ must be between -2 and 2 (1 = none)")
    if class_idx is not None and class_idx < 0:
        raise InvalidInput("class: must be 0 (normal), 1 (tumour) or empty")
    path = snapshot_file(snap)
    settings.tmp_dir.mkdir(parents=True, exist_ok=True)
    _cleanup(settings.tmp_dir)
    token = "gen-" + secrets.token_urlsafe(16)
    folder = settings.tmp_dir / token
    python = commands.python_for(settings.python_executable)
    mix = label_mix(snap) if class_idx is None else None
    groups = split_by_class(seeds, mix) if mix is not None else {class_idx: seeds}
    try:
        for cls, part in groups.items():
            if part:
                calls.generate(python, str(path), part, folder, trunc, cls, fmt)
    except calls.TrainerCallFailed as exc:
        shutil.rmtree(folder, ignore_errors=True)
        raise InvalidInput(str(exc)) from exc
    files = sorted(p for p in folder.iterdir() if p.is_file())
    return Generated(token, folder, files, mix)


def is_conditional(snap: Snapshot) -> bool:
    """Whether the generator takes a class. The job row records it (the form's and an import's
    `cond`), so pages answer without a trainer process (`info snapshot` loads torch and the
    file: 20-odd seconds on a busy machine); only a row without it asks the trainer."""
    options = (snap.job.options or {}) if snap.job else {}
    if "cond" in options:
        return bool(options["cond"])
    python = commands.python_for("")
    net = calls.snapshot_network(python, snap.path, snap.job.run_dir if snap.job else "")
    return bool(net and net.get("c_dim"))


def label_mix(snap: Snapshot) -> float | None:
    """The tumour share of the training data for a conditional snapshot, else None."""
    if not is_conditional(snap):
        return None
    ds = snap.job.dataset if snap.job else None
    if ds is None or not ds.num_images:
        return 0.5
    return ds.num_tumour / ds.num_images


def expand_seeds(text: str) -> list[int]:
    count_seeds(text)
    out: list[int] = []
    for part in text.replace(" ", "").split(","):
        lo, _, hi = part.partition("-")
        out += list(range(int(lo), int(hi) + 1)) if hi else [int(lo)]
    return out


def split_by_class(seeds: str, tumour_share: float) -> dict[int, str]:
    """Seeds per class so the images follow the training data's mix (evenly interleaved)."""
    groups: dict[int, list[int]] = {0: [], 1: []}
    for i, seed in enumerate(expand_seeds(seeds)):
        tumour = int((i + 1) * tumour_share) > int(i * tumour_share)
        groups[1 if tumour else 0].append(seed)
    return {c: ",".join(map(str, v)) for c, v in groups.items()}


def generated_file(settings: Settings, token: str, name: str) -> Path:
    """A file of an earlier generation, by token and name (no path tricks)."""
    if not _TOKEN.match(token) or "/" in name or name.startswith("."):
        raise NotFound("no such generated image")
    path = settings.tmp_dir / token / name
    if not path.is_file():
        raise NotFound("this generated image has expired; generate again")
    return path


def outlined_image(settings: Settings, token: str, name: str) -> bytes:
    """A generated 8-bit PNG with the outlines of the label map generated with it."""
    path = generated_file(settings, token, name)
    mask = path.with_name(name.replace(".png", ".mask.png"))
    if ".mask." in name or not mask.is_file():
        raise NotFound("this generated image has no label map")
    with Image.open(path) as img, Image.open(mask) as lab:
        gray, labels = np.asarray(img.convert("L")), np.asarray(lab)
    if gray.shape != labels.shape:
        raise InvalidInput("the label map does not match its image")
    return gray_png(np.ascontiguousarray(gray), labels)


def zip_generated(gen: Generated, snap: Snapshot) -> Path:
    """The generated files as one zip (stored next to them, removed with the folder)."""
    out = gen.folder / f"snapshot-{snap.id}-kimg{snap.kimg}.zip"
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zf:
        for f in gen.files:
            zf.write(f, f.name)
    return out
