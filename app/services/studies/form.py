"""What the new-study form offers and pre-fills for a snapshot: its own dataset, a held-out
version from the patient-level split, counts that dataset can really give, the training
data's class mix for a conditional generator, and which readers saw the real images."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.errors import DomainError
from app.models import DatasetVersion, Job, Snapshot, User
from app.services.studies import sources

DEFAULT_COUNT = 50


@dataclass
class FormDefaults:
    """The form's values and choices for one snapshot (all None when there is none)."""

    snapshot: Snapshot | None = None
    dataset: DatasetVersion | None = None
    real_choices: list[dict[str, Any]] = field(default_factory=list)
    real_id: int | None = None
    conditional: bool = False
    mix: dict[int, float] = field(default_factory=dict)
    n_real: int = DEFAULT_COUNT
    n_fake: int = DEFAULT_COUNT
    available: int | None = None
    exposure: list[dict[str, Any]] = field(default_factory=list)
    problem: str | None = None

    def values(self) -> dict[str, Any]:
        """The form fields as the template fills them in."""
        return {"snapshot_id": self.snapshot.id if self.snapshot else None,
                "dataset_id": self.dataset.id if self.dataset else None,
                "holdout_dataset_id": str(self.real_id or ""), "n_real": self.n_real,
                "n_fake": self.n_fake, "label": "mix" if self.conditional else "",
                "truncation": 1.0}  # fmt: skip


def snapshot_choices(session: Session) -> list[dict[str, Any]]:
    rows = session.execute(
        select(Snapshot, Job).join(Job, Snapshot.job_id == Job.id).order_by(Snapshot.id.desc())
    ).all()
    return [{"id": s.id, "kimg": s.kimg, "job": j.id, "dataset_id": j.dataset_id,
             "resolution": j.resolution, "cond": bool((j.options or {}).get("cond"))}
            for s, j in rows]  # fmt: skip


def _fits(n: int, shares: dict[int, float], avail: dict[int, int]) -> bool:
    return all(k <= avail.get(c, 0) for c, k in sources.split_counts(n, shares).items())


def max_reals(candidates: dict[str, int | None], shares: dict[int, float] | None) -> int:
    """The most real images the study can take (per class in `shares` when mixing)."""
    if not shares:
        return len(candidates)
    avail = {c: sum(v == c for v in candidates.values()) for c in shares}
    n = len(candidates)
    while n > 0 and not _fits(n, shares, avail):
        n -= 1
    return n


def _real_choices(session: Session, train: DatasetVersion) -> list[dict[str, Any]]:
    held = sources.holdout_candidates(session, train)
    out = [{"id": d.id, "label": f"held out (other patients): #{d.id} {d.name}, "
            f"{d.num_images} images"} for d in held]  # fmt: skip
    out.append({"id": train.id, "label": f"the training dataset #{train.id} (the generator "
                "has seen these images)"})  # fmt: skip
    return out


def exposure(session: Session, real: DatasetVersion, readers: list[User]) -> list[dict]:
    """Per reviewer, how many of `real`'s images they reviewed during curation."""
    counts = sources.reviewed_by(session, real, readers)
    return [{"username": u, "reviewed": n, "of": real.num_images, "dataset_id": real.id}
            for u, n in counts.items() if n]  # fmt: skip


def defaults(
    session: Session, snapshot_id: int | None, real_id: int | None = None
) -> FormDefaults:
    """Defaults for `snapshot_id` (the newest snapshot when None) and an optional real source."""
    snap = session.get(Snapshot, snapshot_id) if snapshot_id else None
    if snap is None:
        snap = session.scalar(select(Snapshot).order_by(Snapshot.id.desc()).limit(1))
    if snap is None:
        return FormDefaults()
    train = snap.job.dataset
    out = FormDefaults(snapshot=snap, dataset=train, conditional=sources.is_conditional(snap))
    out.real_choices = _real_choices(session, train)
    ids = [c["id"] for c in out.real_choices]
    out.real_id = real_id if real_id in ids else ids[0]
    real = session.get(DatasetVersion, out.real_id)
    out.mix = sources.label_mix(train) if out.conditional else {}
    try:
        candidates = sources.real_candidates(session, train, real)
    except DomainError as exc:
        out.problem = exc.detail
        return out
    out.available = max_reals(candidates, out.mix)
    if not out.available:
        out.problem = f"dataset #{real.id} has no real images this study could show"
    out.n_real = out.n_fake = max(1, min(DEFAULT_COUNT, out.available))
    reviewers = session.scalars(
        select(User).where(User.role == "reviewer", User.is_active).order_by(User.username)
    ).all()
    out.exposure = exposure(session, real, list(reviewers))
    return out
