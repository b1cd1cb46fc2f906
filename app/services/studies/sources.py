"""Where a study's images come from: reals sampled from a dataset zip (a version held out from
training by default), synthetics from `python -m trainer generate`, both frozen through the
blinded encoder; and which readers saw the real images during curation."""

from __future__ import annotations

import hashlib
import json
import secrets
import tempfile
import zipfile
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.errors import Conflict, InvalidInput
from app.models import DatasetItem, DatasetVersion, Review, Snapshot, User
from app.services import limits
from app.services.curation import datasets as curation
from app.services.curation.export import image_name
from app.services.studies.images import blind_png
from app.settings import Settings
from app.trainer_client import calls, commands

CLASS_NAMES = {0: "normal", 1: "tumour"}


def zip_of(dataset: DatasetVersion) -> Path:
    if not dataset.zip_path or not Path(dataset.zip_path).is_file():
        raise InvalidInput(f"dataset {dataset.id} has not been exported yet; export it first")
    return Path(dataset.zip_path)


def members(zip_path: Path) -> tuple[list[str], dict[str, int]]:
    """The image members of a dataset zip, sorted, and their labels from dataset.json."""
    with zipfile.ZipFile(zip_path) as zf:
        names = sorted(n for n in zf.namelist() if n.lower().endswith(".png"))
        meta = json.loads(zf.read("dataset.json")) if "dataset.json" in zf.namelist() else {}
    return names, {n: int(c) for n, c in (meta.get("labels") or [])}


def is_conditional(snap: Snapshot) -> bool:
    """Whether the snapshot's generator takes a class (the job was trained with labels)."""
    return bool((snap.job.options or {}).get("cond"))


def label_mix(dataset: DatasetVersion) -> dict[int, float]:
    """The training data's class shares, {0: normal share, 1: tumour share}."""
    n = max(dataset.num_images, 1)
    tumour = dataset.num_tumour / n
    return {0: 1.0 - tumour, 1: tumour}


def split_counts(total: int, shares: dict[int, float]) -> dict[int, int]:
    """`total` split by `shares` with largest remainders (the parts add up to `total`)."""
    raw = {c: total * p for c, p in shares.items()}
    out = {c: int(v) for c, v in raw.items()}
    for c in sorted(raw, key=lambda c: (out[c] - raw[c], c))[: total - sum(out.values())]:
        out[c] += 1
    return out


def check_disjoint(session: Session, a: DatasetVersion, b: DatasetVersion) -> bool:
    """Patient-level disjointness (curation's check): no source volume or patient in both.
    A version without provenance rows cannot be checked, so it never counts as held out."""
    if not a.items or not b.items:
        return False
    try:
        curation.check_disjoint(a, b)
    except Conflict:
        return False
    return True


def holdout_candidates(session: Session, train: DatasetVersion) -> list[DatasetVersion]:
    """Exported versions that look like `train` (resolution, window, bit depth) and share no
    patient with it: the test / validation versions of its patient-level split first (as
    curation orders them), then other versions of other patients, newest first."""
    same = (train.resolution, train.window, train.bit_depth)
    return [
        d for d in curation.heldout_candidates(session, train)
        if (d.resolution, d.window, d.bit_depth) == same and d.items
        and d.zip_path and Path(d.zip_path).is_file()
    ]  # fmt: skip


def default_holdout(session: Session, train: DatasetVersion) -> DatasetVersion | None:
    """The version a study takes its real images from by default (None: only `train`)."""
    found = holdout_candidates(session, train)
    return found[0] if found else None


def real_candidates(
    session: Session, train: DatasetVersion, real: DatasetVersion
) -> dict[str, int | None]:
    """Members of `real`'s zip a study may show, with their class; slices that are also in
    `train` are left out."""
    all_names, labels = members(zip_of(real))
    if real.id == train.id:
        return {n: labels.get(n) for n in all_names}
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
    return {n: labels.get(n) for n in all_names if source[n] not in trained}


def reviewed_by(
    session: Session, dataset: DatasetVersion, users: list[User], names: list[str] | None = None
) -> dict[str, int]:
    """Per user, how many images of `dataset` (only `names` when given) they reviewed during
    curation, from the append-only review rows: a reader who reviewed them is not blind."""
    items = session.scalars(select(DatasetItem).where(DatasetItem.dataset_id == dataset.id)).all()
    if names is not None:
        wanted = set(names)
        items = [it for it in items if image_name(it.position) in wanted]
    slices = {(it.volume_id, it.slice_index) for it in items}
    out = {u.username: 0 for u in users}
    if not slices or not users:
        return out
    volumes = {v for v, _ in slices}
    rows = session.execute(
        select(Review.user_id, Review.volume_id, Review.slice_index)
        .where(Review.volume_id.in_(volumes), Review.user_id.in_([u.id for u in users]))
        .distinct()
    ).all()
    seen: dict[int, set] = {u.id: set() for u in users}
    for user_id, volume_id, index in rows:
        seen[user_id].add((volume_id, index))
    for u in users:  # images, not slices: each image of a reviewed slice counts
        out[u.username] = sum((it.volume_id, it.slice_index) in seen[u.id] for it in items)
    return out


def generate_synthetic(
    settings: Settings, snapshot_path: str, seeds: range, psi: float, label: int | None
) -> dict[int, bytes]:
    """PNG bytes per seed, through the app's one client of the trainer (its failures come in
    the app's words, never the trainer's command line)."""
    python = commands.python_for(settings.python_executable)
    with tempfile.TemporaryDirectory(dir=settings.tmp_dir) as out:
        spec = f"{seeds.start}-{seeds.stop - 1}"
        try:  # the shared bounded queue of study image generation (admins' requests)
            with limits.shared_queue("study image generation", settings).place(0):
                calls.generate(python, snapshot_path, spec, Path(out), psi, label, "png")
        except calls.TrainerCallFailed as exc:
            if exc.timed_out:
                raise Conflict("generating the study's images took too long; try fewer") from exc
            raise InvalidInput(f"the generator could not make the study's images: {exc}") from exc
        files = {s: Path(out) / f"seed{s:04d}.png" for s in seeds}
        if missing := [s for s, f in files.items() if not f.is_file()]:
            raise InvalidInput(f"the generator wrote no image for seeds {missing[:5]}")
        return {s: f.read_bytes() for s, f in files.items()}


def freeze(folder: Path, png: bytes, size: int, offset: tuple[int, int]) -> tuple[str, str]:
    """Blind-encode one image into `folder` under a random name; (file name, sha256)."""
    data = blind_png(png, size, offset)
    name = f"{secrets.token_hex(16)}.png"
    (folder / name).write_bytes(data)
    return name, hashlib.sha256(data).hexdigest()
