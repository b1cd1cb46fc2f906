"""Making a study's images in the background: the monitor's thread (the lease holder's) hands
each "preparing" study to a worker thread, which generates the synthetic images in chunks
(counting them in `studies.prepared` for the page), freezes them with the reals, deals each
reader's trials and opens the study; a failure leaves state "failed" with the reason in words.

A study still "preparing" after an app restart is simply picked up again: nothing of a cut
attempt is kept but its staging folder, which is removed.
"""

from __future__ import annotations

import logging
import secrets
import shutil
import tempfile
import threading
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from app.errors import DomainError, InvalidInput
from app.models import Study, StudyImage
from app.services.studies import sources
from app.services.studies.create import StudyRequest, check, deal_trials, pick_reals, studies_dir
from app.settings import Settings

log = logging.getLogger(__name__)
CHUNK = 16  # synthetic images per trainer call: progress moves, start-up cost stays small


class Withdrawn(Exception):
    """The study left "preparing" (deleted) while its images were being made."""


def request_of(study: Study) -> StudyRequest:
    """The creation request, rebuilt from the row (to resume or retry)."""
    return StudyRequest(
        snapshot_id=study.snapshot_id, dataset_id=study.dataset_id, n_real=study.n_real,
        n_fake=study.n_fake, readers=[r.user_id for r in study.readers],
        truncation=study.truncation, rate_usable=study.rate_usable, name=study.name,
        holdout_dataset_id=study.real_dataset_id, label=study.label,
        mix_classes=True if study.class_mix is not None else None,
    )  # fmt: skip


def _count(session: Session, study_id: int, done: int) -> None:
    moved = session.execute(
        update(Study).where(Study.id == study_id, Study.state == "preparing").values(prepared=done)
    )
    session.commit()
    if moved.rowcount != 1:
        raise Withdrawn


def _entries(session: Session, settings: Settings, study: Study,
             rng: np.random.Generator) -> list[tuple[bool, str, int | None, bytes]]:  # fmt: skip
    """(synthetic, source, class, PNG) of every image, counted as they are made."""
    study_id, req = study.id, request_of(study)
    plan = check(session, req)
    entries: list[tuple[bool, str, int | None, bytes]] = []
    seed = study.seed
    for cls, (_, n_fake) in plan.per_class.items():
        for start in range(seed, seed + n_fake, CHUNK):
            seeds = range(start, min(start + CHUNK, seed + n_fake))
            made = sources.generate_synthetic(settings, plan.snap.path, seeds, req.truncation, cls)
            entries += [(True, f"seed {s}", cls, png) for s, png in made.items()]
            _count(session, study_id, len(entries))
        seed += n_fake
    reals = pick_reals(session, plan, rng)
    try:
        with zipfile.ZipFile(sources.zip_of(plan.real)) as zf:
            entries += [(False, name, cls, zf.read(name)) for name, cls in reals]
    except (OSError, zipfile.BadZipFile, zlib.error) as exc:
        raise InvalidInput(
            f"dataset {plan.real.id}'s zip could not be read ({exc}); export it again"
        ) from exc
    _count(session, study_id, len(entries))
    return entries


def _make(session: Session, settings: Settings, study: Study) -> None:
    rng = np.random.default_rng(secrets.randbits(64))
    offset = (int(rng.integers(2)), int(rng.integers(2)))  # the study's crop (images.py)
    root = settings.data_dir / "studies"
    root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".new-", dir=root))
    folder: Path | None = None
    try:
        entries = _entries(session, settings, study, rng)
        frozen = []
        for i in rng.permutation(len(entries)):  # ids and files carry no class order
            synthetic, source, cls, png = entries[i]
            name, digest = sources.freeze(staging, png, study.resolution, offset)
            frozen.append((synthetic, source, cls, name, digest))
        opened = session.execute(
            update(Study)
            .where(Study.id == study.id, Study.state == "preparing")
            .values(state="open", prepared=len(frozen), prepare_error=None)
        )
        if opened.rowcount != 1:
            raise Withdrawn
        folder = studies_dir(settings, study.id)
        shutil.rmtree(folder, ignore_errors=True)  # what a cut attempt left
        staging.rename(folder)
        held_out = study.reals_held_out
        for synthetic, source, cls, name, digest in frozen:
            study.images.append(
                StudyImage(synthetic=synthetic, source=source, label=cls,
                           held_out=held_out and not synthetic, path=str(folder / name),
                           sha256=digest)
            )  # fmt: skip
        session.flush()
        for reader in study.readers:
            deal_trials(reader, study.images)
        session.commit()
    except BaseException:
        session.rollback()
        shutil.rmtree(staging, ignore_errors=True)
        if folder is not None:
            shutil.rmtree(folder, ignore_errors=True)
        raise


def prepare(sessions: Callable[[], Session], settings: Settings, study_id: int) -> None:
    """Make one preparing study's images and open it, or mark it failed with the reason."""
    with sessions() as session:
        study = session.get(Study, study_id)
        if study is None or study.state != "preparing":
            return
        try:
            _make(session, settings, study)
        except Withdrawn:
            return
        except Exception as exc:
            if isinstance(exc, DomainError):
                reason = exc.detail
            else:
                log.exception("preparing study %s failed", study_id)
                reason = f"the images could not be made ({type(exc).__name__}); see the server log"
            session.execute(
                update(Study)
                .where(Study.id == study_id, Study.state == "preparing")
                .values(state="failed", prepare_error=reason)
            )
            session.commit()


class StudyPreparer:
    """A job-monitor follower: each pass starts a worker for every preparing study that has
    none in this process (after a restart: every one of them)."""

    name = "study preparation"

    def __init__(self, settings: Settings, sessions: Callable[[], Session]) -> None:
        self.settings, self.sessions = settings, sessions
        self._working: set[int] = set()
        self._lock = threading.Lock()

    def tick(self, session: Session, start: bool) -> None:
        if not start:
            return
        for study_id in session.scalars(select(Study.id).where(Study.state == "preparing")):
            with self._lock:
                if study_id in self._working:
                    continue
                self._working.add(study_id)
            threading.Thread(
                target=self._work, args=(study_id,), name=f"study-{study_id}", daemon=True
            ).start()

    def _work(self, study_id: int) -> None:
        try:
            prepare(self.sessions, self.settings, study_id)
        finally:
            with self._lock:
                self._working.discard(study_id)
