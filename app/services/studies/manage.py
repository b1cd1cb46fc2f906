"""Reader studies: create one (generate and freeze the synthetic images, sample the real ones,
keep the answer key server-side), list, close, remove a reader, and who may see what."""

from __future__ import annotations

import secrets
import shutil
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.errors import Conflict, Forbidden, InvalidInput, NotFound
from app.models import DatasetVersion, Snapshot, Study, StudyImage, StudyReader, Trial, User, utcnow
from app.services.curation import audit
from app.services.studies import sources
from app.settings import Settings

MAX_IMAGES = 2000


@dataclass(frozen=True)
class StudyRequest:
    """What an admin picks when creating a study (the JSON body and the form share it)."""

    snapshot_id: int
    dataset_id: int
    n_real: int
    n_fake: int
    readers: list[str | int]
    truncation: float = 1.0
    rate_usable: bool = False
    name: str = ""
    holdout_dataset_id: int | None = None  # a version whose images were not trained on
    label: int | None = None  # class for a conditional generator; reals are filtered to it


def studies_dir(settings: Settings, study_id: int) -> Path:
    return settings.data_dir / "studies" / str(study_id)


def get_study(session: Session, study_id: int) -> Study:
    study = session.get(Study, study_id)
    if study is None:
        raise NotFound(f"study {study_id} not found")
    return study


def _readers(session: Session, names: list[str | int]) -> list[User]:
    """Resolve usernames or ids to active reviewer accounts, each once."""
    if not names:
        raise InvalidInput("a study needs at least one reader")
    users: dict[int, User] = {}
    for ref in names:
        col = User.id if isinstance(ref, int) else User.username
        user = session.scalar(select(User).where(col == ref))
        if user is None:
            raise InvalidInput(f"no user {ref!r}")
        if user.role != "reviewer":
            raise InvalidInput(f"{user.username} is an {user.role}; readers must be reviewers")
        if not user.is_active:
            raise InvalidInput(f"{user.username} is deactivated")
        users[user.id] = user
    return list(users.values())


def _check(session: Session, req: StudyRequest) -> tuple[Snapshot, DatasetVersion, DatasetVersion]:
    """Every check that needs no image work; raises a clear 4xx before anything is written."""
    if req.n_real < 1 or req.n_fake < 1:
        raise InvalidInput("a study needs at least one real and one synthetic image")
    if req.n_real + req.n_fake > MAX_IMAGES:
        raise InvalidInput(f"a study holds at most {MAX_IMAGES} images")
    if not 0.0 <= req.truncation <= 2.0:
        raise InvalidInput("truncation psi must be between 0 and 2 (1 = none)")
    snap = session.get(Snapshot, req.snapshot_id)
    if snap is None:
        raise NotFound(f"snapshot {req.snapshot_id} not found")
    train = session.get(DatasetVersion, req.dataset_id)
    if train is None:
        raise NotFound(f"dataset {req.dataset_id} not found")
    if snap.job.dataset_id != train.id:
        raise InvalidInput(
            f"snapshot {snap.id} was trained on dataset {snap.job.dataset_id}, not {train.id}"
        )
    if snap.job.resolution != train.resolution:
        raise InvalidInput(
            f"snapshot {snap.id} makes {snap.job.resolution}x{snap.job.resolution} images but "
            f"dataset {train.id} is {train.resolution}x{train.resolution}"
        )
    if not Path(snap.path).is_file():
        raise InvalidInput(f"snapshot {snap.id}'s file is missing: {snap.path}")
    real = train
    if req.holdout_dataset_id is not None and req.holdout_dataset_id != train.id:
        real = session.get(DatasetVersion, req.holdout_dataset_id)
        if real is None:
            raise NotFound(f"dataset {req.holdout_dataset_id} not found")
        same = (real.resolution, real.window, real.bit_depth)
        if same != (train.resolution, train.window, train.bit_depth):
            raise InvalidInput(
                f"held-out dataset {real.id} must have dataset {train.id}'s resolution, "
                "window and bit depth, or its images would look different"
            )
    return snap, train, real


def create_study(session: Session, settings: Settings, admin: User, req: StudyRequest) -> Study:
    """Validate, freeze the images, shuffle each reader's order and mint their trial tokens."""
    readers = _readers(session, req.readers)
    snap, train, real = _check(session, req)
    candidates = sources.real_candidates(session, train, real, req.label)
    if req.n_real > len(candidates):
        kind = "held-out " if real.id != train.id else ""
        cls = f" of class {req.label}" if req.label is not None else ""
        raise InvalidInput(
            f"asked for {req.n_real} real images but dataset {real.id} has only "
            f"{len(candidates)} {kind}images{cls}"
        )
    rng = np.random.default_rng(secrets.randbits(64))
    seed0 = secrets.randbelow(2**31 - req.n_fake)
    held_out = real.id != train.id
    root = settings.data_dir / "studies"
    root.mkdir(parents=True, exist_ok=True)
    # The slow part (the trainer subprocess) runs before any row is written, so the database
    # is never locked while images are generated.
    staging = Path(tempfile.mkdtemp(prefix=".new-", dir=root))
    folder: Path | None = None
    try:
        fakes = sources.generate_synthetic(
            settings, snap.path, range(seed0, seed0 + req.n_fake), req.truncation, req.label
        )
        picked = [candidates[i] for i in sorted(rng.choice(len(candidates), req.n_real, False))]
        with zipfile.ZipFile(sources.zip_of(real)) as zf:
            reals = {name: zf.read(name) for name in picked}
        entries = [(True, f"seed {s}", False, png) for s, png in fakes.items()]
        entries += [(False, name, held_out, png) for name, png in reals.items()]
        frozen = []
        for i in rng.permutation(len(entries)):  # ids and files carry no class order
            synthetic, source, held, png = entries[i]
            frozen.append(
                (synthetic, source, held, *sources.freeze(staging, png, train.resolution))
            )
        study = Study(
            name=req.name.strip() or f"Snapshot {snap.id} vs dataset {train.id}",
            snapshot_id=snap.id, dataset_id=train.id, real_dataset_id=real.id,
            reals_held_out=held_out, resolution=train.resolution, n_real=req.n_real,
            n_fake=req.n_fake, truncation=req.truncation, label=req.label,
            rate_usable=req.rate_usable, seed=seed0, created_by_id=admin.id,
        )  # fmt: skip
        session.add(study)
        session.flush()
        folder = studies_dir(settings, study.id)
        shutil.rmtree(folder, ignore_errors=True)  # a leftover of a study never committed
        staging.rename(folder)
        for synthetic, source, held, name, digest in frozen:
            study.images.append(
                StudyImage(synthetic=synthetic, source=source, held_out=held,
                           path=str(folder / name), sha256=digest)
            )  # fmt: skip
        session.flush()
        for user in readers:
            _assign(study, user)
        session.flush()
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        if folder is not None:
            shutil.rmtree(folder, ignore_errors=True)
        raise
    audit.record(session, "study.create", admin, f"study:{study.id}", readers=len(readers))
    return study


def _assign(study: Study, user: User) -> StudyReader:
    """A reader with their own seeded order and one unguessable token per image."""
    reader = StudyReader(user_id=user.id, order_seed=secrets.randbits(62))
    study.readers.append(reader)
    order = np.random.default_rng(reader.order_seed).permutation(len(study.images))
    for position, i in enumerate(order):
        reader.trials.append(
            Trial(image_id=study.images[i].id, position=position, token=secrets.token_urlsafe(24))
        )
    return reader


def close_study(session: Session, study_id: int, admin: User) -> Study:
    study = get_study(session, study_id)
    if study.state == "closed":
        raise Conflict(f"study {study_id} is already closed")
    study.state, study.closed_at = "closed", utcnow()
    audit.record(session, "study.close", admin, f"study:{study.id}")
    return study


def remove_reader(session: Session, study_id: int, username: str, admin: User) -> StudyReader:
    """Stop a reader mid-study: their answers stay and count, they cannot answer any more."""
    study = get_study(session, study_id)
    for reader in study.readers:
        if reader.user.username == username:
            if reader.removed_at is not None:
                raise Conflict(f"{username} was already removed from study {study_id}")
            reader.removed_at = utcnow()
            audit.record(
                session, "study.remove_reader", admin, f"study:{study.id}", reader=username
            )
            return reader
    raise NotFound(f"{username} is not a reader of study {study_id}")


def reader_of(session: Session, study: Study, user: User) -> StudyReader:
    """The user's place in the study; a study they are not in does not exist for them."""
    reader = session.scalar(
        select(StudyReader).where(StudyReader.study_id == study.id, StudyReader.user_id == user.id)
    )
    if reader is None:
        raise NotFound(f"study {study.id} not found")
    if reader.removed_at is not None:
        raise Forbidden(f"you were removed from study {study.id}; your answers are kept")
    return reader


def progress(session: Session, reader: StudyReader) -> tuple[int, int]:
    """(answered, total) for one reader."""
    answered, total = session.execute(
        select(func.count(Trial.answered_at), func.count(Trial.id)).where(
            Trial.reader_id == reader.id
        )
    ).one()
    return int(answered), int(total)


def list_studies(session: Session, user: User) -> list[dict]:
    """Admins see every study; a reviewer sees the ones they read, with only their progress."""
    if user.is_admin:
        return [
            study_summary(session, s) for s in session.scalars(select(Study).order_by(Study.id))
        ]
    readers = session.scalars(
        select(StudyReader)
        .where(StudyReader.user_id == user.id, StudyReader.removed_at.is_(None))
        .order_by(StudyReader.study_id)
    )
    return [reader_summary(session, r) for r in readers]


def reader_summary(session: Session, reader: StudyReader) -> dict:
    """A reviewer's view of a study they read: its name, state and their own progress only."""
    answered, total = progress(session, reader)
    s = reader.study
    return {"id": s.id, "name": s.name, "state": s.state, "answered": answered, "total": total,
            "finished": answered == total}  # fmt: skip


def study_summary(session: Session, study: Study) -> dict:
    """The admin's view of a study (includes the design; never the per-image key)."""
    readers = []
    for r in study.readers:
        answered, total = progress(session, r)
        removed, active = r.removed_at is not None, r.user.is_active
        readers.append({"username": r.user.username, "answered": answered, "total": total,
                        "removed": removed, "active": active})  # fmt: skip
    return {
        "id": study.id, "name": study.name, "state": study.state,
        "snapshot_id": study.snapshot_id, "dataset_id": study.dataset_id,
        "real_dataset_id": study.real_dataset_id, "reals_held_out": study.reals_held_out,
        "resolution": study.resolution, "n_real": study.n_real, "n_fake": study.n_fake,
        "truncation": study.truncation, "label": study.label, "rate_usable": study.rate_usable,
        "created_at": study.created_at.isoformat(), "readers": readers,
    }  # fmt: skip
