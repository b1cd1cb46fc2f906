"""Creating a reader study: validate the request, plan its images per class and write the study
in state "preparing" with its readers; prepare.py then generates and freezes the images in the
background, and deals each reader's shuffled trials."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.errors import InvalidInput, NotFound
from app.models import DatasetVersion, Snapshot, Study, StudyImage, StudyReader, Trial, User
from app.services.curation import audit
from app.services.curation import datasets as curation
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
    # None: the default held-out version (patient-level disjoint from training) when there is
    # one, else the training version; the training version's own id: its images, knowingly
    holdout_dataset_id: int | None = None
    label: int | None = None  # one class only (0 normal, 1 tumour), reals filtered to it
    mix_classes: bool | None = None  # None: a conditional snapshot mixes in the data's ratio


@dataclass
class Plan:
    """A checked request: where images come from and how many of each class."""

    snap: Snapshot
    train: DatasetVersion
    real: DatasetVersion
    per_class: dict[int | None, tuple[int, int]]  # class -> (n_real, n_fake)

    @property
    def held_out(self) -> bool:
        return self.real.id != self.train.id

    @property
    def class_mix(self) -> dict | None:
        if list(self.per_class) == [None]:
            return None
        return {str(c): {"real": r, "fake": f} for c, (r, f) in self.per_class.items()}


def studies_dir(settings: Settings, study_id: int) -> Path:
    return settings.data_dir / "studies" / str(study_id)


def readers_of(session: Session, names: list[str | int]) -> list[User]:
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


def _sources(session: Session, req: StudyRequest) -> tuple[Snapshot, DatasetVersion]:
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
    return snap, train


def real_source(session: Session, train: DatasetVersion, wanted: int | None) -> DatasetVersion:
    """The version the real images come from (see StudyRequest.holdout_dataset_id)."""
    if wanted is None:
        return sources.default_holdout(session, train) or train
    if wanted == train.id:
        return train
    real = session.get(DatasetVersion, wanted)
    if real is None:
        raise NotFound(f"dataset {wanted} not found")
    if (real.resolution, real.window, real.bit_depth) != (
        train.resolution, train.window, train.bit_depth):  # fmt: skip
        raise InvalidInput(
            f"held-out dataset {real.id} must have dataset {train.id}'s resolution, "
            "window and bit depth, or its images would look different"
        )
    if not real.items:
        raise InvalidInput(
            f"dataset {real.id} has no provenance rows, so it cannot be checked to hold out "
            "the training patients; choose a version of a patient-level split"
        )
    curation.check_disjoint(train, real)  # 409 naming the shared volumes (patients)
    return real


def class_plan(
    snap: Snapshot, train: DatasetVersion, req: StudyRequest
) -> dict[int | None, tuple[int, int]]:
    """How many real and synthetic images of each class (None: classes not used)."""
    cond = sources.is_conditional(snap)
    if req.label is not None:
        if req.label not in sources.CLASS_NAMES:
            raise InvalidInput("class must be 0 (normal) or 1 (tumour)")
        if not cond:
            raise InvalidInput(
                f"snapshot {snap.id} was trained without labels, so it cannot make only "
                f"{sources.CLASS_NAMES[req.label]} images; leave the class empty"
            )
        return {req.label: (req.n_real, req.n_fake)}
    if not cond:
        if req.mix_classes:
            raise InvalidInput(f"snapshot {snap.id} was trained without labels; it has no classes")
        return {None: (req.n_real, req.n_fake)}
    if req.mix_classes is False:
        raise InvalidInput(
            f"snapshot {snap.id} makes normal or tumour images: choose one class, or mix both "
            "in the training data's ratio"
        )
    shares = sources.label_mix(train)
    reals = sources.split_counts(req.n_real, shares)
    fakes = sources.split_counts(req.n_fake, shares)
    return {c: (reals[c], fakes[c]) for c in shares if reals[c] or fakes[c]}


def check(session: Session, req: StudyRequest) -> Plan:
    """Every check that needs no image work; raises a clear 4xx before anything is written."""
    if req.n_real < 1 or req.n_fake < 1:
        raise InvalidInput("a study needs at least one real and one synthetic image")
    if req.n_real + req.n_fake > MAX_IMAGES:
        raise InvalidInput(f"a study holds at most {MAX_IMAGES} images")
    if not 0.0 <= req.truncation <= 2.0:
        raise InvalidInput("truncation psi must be between 0 and 2 (1 = none)")
    snap, train = _sources(session, req)
    real = real_source(session, train, req.holdout_dataset_id)
    return Plan(snap, train, real, class_plan(snap, train, req))


def pick_reals(
    session: Session, plan: Plan, rng: np.random.Generator
) -> list[tuple[str, int | None]]:
    """(zip member, class) of the real images, per class as planned."""
    candidates = sources.real_candidates(session, plan.train, plan.real)
    kind = "held-out " if plan.held_out else ""
    picked = []
    for cls, (n_real, _) in plan.per_class.items():
        pool = sorted(n for n, c in candidates.items() if cls is None or c == cls)
        if n_real > len(pool):
            what = f" {sources.CLASS_NAMES.get(cls, cls)}" if cls is not None else ""
            raise InvalidInput(
                f"asked for {n_real}{what} real images but dataset {plan.real.id} has only "
                f"{len(pool)} {kind}images{' of that class' if what else ''}"
            )
        picked += [(pool[i], cls) for i in sorted(rng.choice(len(pool), n_real, False))]
    labels = candidates
    return [(name, cls if cls is not None else labels.get(name)) for name, cls in picked]


def create_study(session: Session, settings: Settings, admin: User, req: StudyRequest) -> Study:
    """Validate and write the study in state "preparing" with its readers; its images are made
    in the background (prepare.py), so the request returns at once."""
    readers = readers_of(session, req.readers)
    plan = check(session, req)
    pick_reals(session, plan, np.random.default_rng())  # too few reals: refused now, in words
    study = _study_row(plan, req, admin, secrets.randbelow(2**31 - req.n_fake))
    session.add(study)
    for user in readers:
        # 31 bits: the column is a 32-bit INTEGER on PostgreSQL (SQLite took 62)
        study.readers.append(StudyReader(user_id=user.id, order_seed=secrets.randbits(31)))
    session.flush()
    audit.record(session, "study.create", admin, f"study:{study.id}", readers=len(readers))
    session.commit()
    return study


def _study_row(plan: Plan, req: StudyRequest, admin: User, seed0: int) -> Study:
    snap, train = plan.snap, plan.train
    return Study(
        name=req.name.strip() or f"Snapshot {snap.id} vs dataset {plan.real.id}",
        snapshot_id=snap.id, dataset_id=train.id, real_dataset_id=plan.real.id,
        reals_held_out=plan.held_out, resolution=train.resolution, n_real=req.n_real,
        n_fake=req.n_fake, truncation=req.truncation, label=req.label,
        class_mix=plan.class_mix, rate_usable=req.rate_usable, seed=seed0,
        created_by_id=admin.id, state="preparing",
    )  # fmt: skip


def assign(study: Study, user: User) -> StudyReader:
    """A reader with their own seeded order and one unguessable token per image."""
    # 31 bits: the column is a 32-bit INTEGER on PostgreSQL (SQLite took 62)
    reader = StudyReader(user_id=user.id, order_seed=secrets.randbits(31))
    study.readers.append(reader)
    deal_trials(reader, study.images)
    return reader


def deal_trials(reader: StudyReader, images: list[StudyImage]) -> None:
    """The reader's own order (from their seed) and one unguessable token per image."""
    order = np.random.default_rng(reader.order_seed).permutation(len(images))
    for position, i in enumerate(order):
        reader.trials.append(
            Trial(image_id=images[i].id, position=position, token=secrets.token_urlsafe(24))
        )
