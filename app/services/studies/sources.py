"""Where a study's images come from: reals sampled from a dataset zip (held out from training
where a held-out version is given), synthetics from `python -m trainer generate`, both frozen
through the blinded encoder."""

from __future__ import annotations

import hashlib
import json
import secrets
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.errors import Conflict, InvalidInput
from app.models import DatasetItem, DatasetVersion
from app.services.studies.images import blind_png
from app.settings import Settings

ROOT = Path(__file__).resolve().parents[2]  # where `python -m trainer` is importable
GENERATE_TIMEOUT_S = 1800


def zip_of(dataset: DatasetVersion) -> Path:
    if not dataset.zip_path or not Path(dataset.zip_path).is_file():
        raise InvalidInput(f"dataset {dataset.id} has not been exported yet; export it first")
    return Path(dataset.zip_path)


def _members(zip_path: Path) -> tuple[list[str], dict[str, int]]:
    """The image members of a dataset zip, sorted, and their labels from dataset.json."""
    with zipfile.ZipFile(zip_path) as zf:
        names = sorted(n for n in zf.namelist() if n.lower().endswith(".png"))
        meta = json.loads(zf.read("dataset.json")) if "dataset.json" in zf.namelist() else {}
    return names, {n: int(c) for n, c in (meta.get("labels") or [])}


def real_candidates(
    session: Session, train: DatasetVersion, real: DatasetVersion, label: int | None
) -> list[str]:
    """Members of `real`'s zip a study may show; slices that are also in `train` are left out."""
    all_names, labels = _members(zip_of(real))
    names = all_names
    if label is not None:
        if not labels:
            raise InvalidInput(f"dataset {real.id} has no labels to pick class {label} from")
        names = [n for n in names if labels.get(n) == label]
    if real.id == train.id:
        return names
    items = session.scalars(
        select(DatasetItem).where(DatasetItem.dataset_id == real.id).order_by(DatasetItem.position)
    ).all()
    if len(items) != len(all_names):
        raise InvalidInput(f"dataset {real.id}'s zip does not match its slices; export it again")
    trained = set(
        session.execute(
            select(DatasetItem.volume_id, DatasetItem.slice_index).where(
                DatasetItem.dataset_id == train.id
            )
        ).all()
    )
    source = {n: (it.volume_id, it.slice_index) for n, it in zip(all_names, items, strict=True)}
    return [n for n in names if source[n] not in trained]


def generate_synthetic(
    settings: Settings, snapshot_path: str, seeds: range, psi: float, label: int | None
) -> dict[int, bytes]:
    """PNG bytes per seed from `python -m trainer generate` (the app never imports the trainer)."""
    python = settings.python_executable or sys.executable
    with tempfile.TemporaryDirectory(dir=settings.tmp_dir) as out:
        cmd = [python, "-m", "trainer", "generate", "--snapshot", snapshot_path]
        cmd += ["--seeds", f"{seeds.start}-{seeds.stop - 1}", "--trunc", repr(psi)]
        cmd += ["--outdir", out, "--format", "png"]
        cmd += ["--class", str(label)] if label is not None else []
        try:
            proc = subprocess.run(
                cmd, cwd=ROOT, capture_output=True, text=True, timeout=GENERATE_TIMEOUT_S
            )
        except subprocess.TimeoutExpired as exc:
            raise Conflict("the trainer took too long to generate the images") from exc
        if proc.returncode != 0:
            why = (proc.stderr.strip().splitlines() or ["no message"])[-1]
            raise InvalidInput(f"the trainer could not generate the images: {why}")
        files = {s: Path(out) / f"seed{s:04d}.png" for s in seeds}
        if missing := [s for s, f in files.items() if not f.is_file()]:
            raise InvalidInput(f"the trainer wrote no image for seeds {missing[:5]}")
        return {s: f.read_bytes() for s, f in files.items()}


def freeze(folder: Path, png: bytes, size: int) -> tuple[str, str]:
    """Blind-encode one image into `folder` under a random name; (file name, sha256)."""
    data = blind_png(png, size)
    name = f"{secrets.token_hex(16)}.png"
    (folder / name).write_bytes(data)
    return name, hashlib.sha256(data).hexdigest()
