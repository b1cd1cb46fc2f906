"""What goes into a dataset: the slices a freeze takes (chosen volumes, filters) and the
patient-level train / val / test split of those volumes."""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.errors import Conflict, InvalidInput, NotFound
from app.models import Review, User, Volume
from app.services.curation.reviews import LABELS, latest_by_reviewer, latest_reviews
from app.services.curation.volumes import patient_key

SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class Filters:
    """Which approved slices a freeze takes. None means "no restriction"."""

    volume_ids: tuple[int, ...] | None = None
    label: str | None = None  # normal | tumour
    reviewer: str | None = None  # only slices this reviewer approved (their latest decision)
    min_reviewers: int = 1  # approved by at least k reviewers (their latest decisions)

    def as_dict(self) -> dict:
        return {
            "volume_ids": list(self.volume_ids) if self.volume_ids is not None else None,
            "label": self.label,
            "reviewer": self.reviewer,
            "min_reviewers": self.min_reviewers,
        }


@dataclass(frozen=True)
class Split:
    val: float = 0.0
    test: float = 0.0
    seed: int = 0


@dataclass
class VolumeCount:
    volume: Volume
    total: int = 0
    tumour: int = 0
    reviews: list[Review] = field(default_factory=list)


def volumes_for(session: Session, volume_ids: tuple[int, ...] | None) -> list[Volume]:
    """The chosen volumes (all unarchived ones when none are named); archived or unknown
    ids are refused by name, so a script learns what it asked for wrongly."""
    if volume_ids is None:
        return list(session.scalars(select(Volume).where(Volume.archived_at.is_(None))))
    if not volume_ids:
        raise InvalidInput("volume_ids is empty: choose at least one volume")
    found = {v.id: v for v in session.scalars(select(Volume).where(Volume.id.in_(volume_ids)))}
    missing = [i for i in volume_ids if i not in found]
    if missing:
        raise NotFound(f"no volume with id {', '.join(map(str, missing))}")
    archived = [i for i in volume_ids if found[i].archived_at is not None]
    if archived:
        raise Conflict(f"volume {', '.join(map(str, archived))} is archived; unarchive it first")
    return [found[i] for i in sorted(set(volume_ids))]


def check_filters(session: Session, filters: Filters) -> Filters:
    if filters.label is not None and filters.label not in LABELS:
        raise InvalidInput(f"label must be 'normal' or 'tumour', not {filters.label!r}")
    if not 1 <= filters.min_reviewers <= 50:
        raise InvalidInput(f"min_reviewers must be from 1 to 50, got {filters.min_reviewers}")
    if filters.reviewer is not None:
        if session.scalar(select(User.id).where(User.username == filters.reviewer)) is None:
            raise NotFound(f"no user named {filters.reviewer!r}")
    return filters


def _chosen_review(
    latest: Review, votes: dict[int, Review], filters: Filters, reviewer_id: int | None
) -> Review | None:
    """The review that puts a slice in the freeze (its provenance), or None if it is out."""
    # k >= 2 asks for several reads: only independent ones (made without sight of another
    # reviewer's decision, reviews.py) count; k = 1 is any approval.
    approvals = sum(
        r.decision == "approved" and (r.independent or filters.min_reviewers == 1)
        for r in votes.values()
    )
    if approvals < filters.min_reviewers:
        return None
    if reviewer_id is not None:
        chosen = votes.get(reviewer_id)
    else:
        chosen = latest  # a later rejection by anyone keeps the slice out
    if chosen is None or chosen.decision != "approved":
        return None
    if filters.label is not None and chosen.label != filters.label:
        return None
    return chosen


def count_by_volume(session: Session, filters: Filters) -> list[VolumeCount]:
    """Per chosen volume, the approved slices the filters keep (sorted by slice)."""
    filters = check_filters(session, filters)
    volumes = volumes_for(session, filters.volume_ids)
    reviewer_id = (
        session.scalar(select(User.id).where(User.username == filters.reviewer))
        if filters.reviewer
        else None
    )
    counts = {v.id: VolumeCount(v) for v in volumes}
    votes = latest_by_reviewer(session)
    for key, latest in sorted(latest_reviews(session).items()):
        entry = counts.get(key[0])
        if entry is None:
            continue
        chosen = _chosen_review(latest, votes.get(key, {}), filters, reviewer_id)
        if chosen is not None:
            entry.reviews.append(chosen)
            entry.total += 1
            entry.tumour += chosen.label == "tumour"
    return list(counts.values())


def preview(session: Session, filters: Filters) -> dict:
    """The counts a freeze with these filters would take, overall and per volume."""
    rows = count_by_volume(session, filters)
    return {
        "total": sum(r.total for r in rows),
        "tumour": sum(r.tumour for r in rows),
        "volumes": [
            {
                "id": r.volume.id,
                "name": r.volume.name,
                "is_demo": r.volume.is_demo,
                "approved": r.total,
                "tumour": r.tumour,
            }
            for r in rows
        ],
    }


def check_split(split: Split) -> Split:
    for name in ("val", "test"):
        value = getattr(split, name)
        if not 0 <= value < 1:
            raise InvalidInput(f"split.{name} must be a fraction from 0 to below 1, got {value}")
    if split.val + split.test >= 1:
        raise InvalidInput("split.val + split.test must leave something for training (< 1)")
    return split


def split_volumes(rows: list[VolumeCount], split: Split) -> dict[str, list[VolumeCount]]:
    """Assign whole patients (all their volumes) to train / val / test with a seeded shuffle.

    Never by slice: neighbouring slices of one patient are near-duplicates, so a slice-level
    split leaks the test set into training. Shares are of patients, rounded, at least one
    patient in a split whose fraction is above zero."""
    groups: dict[str, list[VolumeCount]] = {}
    for row in rows:
        if row.total:
            groups.setdefault(patient_key(row.volume), []).append(row)
    keys = sorted(groups)
    random.Random(split.seed).shuffle(keys)
    sizes = {
        name: max(1, round(getattr(split, name) * len(keys))) if getattr(split, name) else 0
        for name in ("test", "val")
    }
    if sizes["test"] + sizes["val"] >= len(keys):
        raise Conflict(
            f"a split needs more patients: {len(keys)} with approved slices, "
            f"{sizes['val']} for val and {sizes['test']} for test leave none for training"
        )
    test, val = keys[: sizes["test"]], keys[sizes["test"] : sizes["test"] + sizes["val"]]
    train = keys[sizes["test"] + sizes["val"] :]
    return {
        name: sorted((row for k in part for row in groups[k]), key=lambda r: r.volume.id)
        for name, part in (("train", train), ("val", val), ("test", test))
    }
