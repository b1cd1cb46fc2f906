"""How far the reviewers agree, chance-corrected: Cohen's kappa for two readers, Fleiss' kappa
for more, over the slices every one of them decided (approve / reject, latest decisions).

Cohen (1960): kappa = (p_o - p_e) / (1 - p_e), p_e = sum_k p_1k p_2k.
Fleiss (1971): kappa = (P_bar - P_e) / (1 - P_e), P_i = (sum_j n_ij^2 - n) / (n (n - 1)),
P_e = sum_j p_j^2, with n ratings per slice."""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session, joinedload

from app.models import DatasetVersion, Review
from app.services.curation.datasets import version_volume_ids
from app.services.curation.reviews import DECISIONS

Votes = dict[tuple[int, int], dict[int, Review]]  # (volume, slice) -> {user id: latest review}


def cohen_kappa(pairs: list[tuple[str, str]]) -> float | None:
    """Two readers' decisions on the same slices; None when chance agreement is 1 (both
    readers gave one and the same answer throughout, so kappa is undefined)."""
    n = len(pairs)
    if n == 0:
        return None
    observed = sum(a == b for a, b in pairs) / n
    first, second = Counter(a for a, _ in pairs), Counter(b for _, b in pairs)
    chance = sum(first[k] * second[k] for k in DECISIONS) / n**2
    return None if chance >= 1 else (observed - chance) / (1 - chance)


def fleiss_kappa(items: list[list[str]]) -> float | None:
    """Each item holds the same number (>= 2) of readers' decisions; None when undefined."""
    if not items:
        return None
    n = len(items[0])
    counts = [Counter(item) for item in items]
    per_item = [(sum(c[k] ** 2 for k in DECISIONS) - n) / (n * (n - 1)) for c in counts]
    p_bar = sum(per_item) / len(items)
    shares = [sum(c[k] for c in counts) / (len(items) * n) for k in DECISIONS]
    chance = sum(p**2 for p in shares)
    return None if chance >= 1 else (p_bar - chance) / (1 - chance)


def summarize(votes: Votes, names: dict[int, str], within: set[int] | None = None) -> dict:
    """Kappa over the slices all readers decided; `within` limits it to these slice indices
    (a blinded reviewer's own reads). Also the raw agreement and how many slices it rests on."""
    readers = sorted({uid for v in votes.values() for uid in v}, key=lambda u: names.get(u, ""))
    out = {
        "readers": [names.get(u, "?") for u in readers],
        "method": None,
        "kappa": None,
        "observed": None,
        "slices": 0,
    }
    if len(readers) < 2:
        return out | {"why": "fewer than two reviewers have decided slices here"}
    common = [
        [v[u].decision for u in readers]
        for (_, index), v in sorted(votes.items())
        if all(u in v for u in readers) and (within is None or index in within)
    ]
    out["method"] = "cohen" if len(readers) == 2 else "fleiss"
    out["slices"] = len(common)
    if not common:
        return out | {"why": f"no slice has been decided by all {len(readers)} reviewers"}
    kappa = cohen_kappa([(a, b) for a, b in common]) if len(readers) == 2 else fleiss_kappa(common)
    out["observed"] = round(sum(len(set(c)) == 1 for c in common) / len(common), 4)
    out["kappa"] = None if kappa is None else round(kappa, 4)
    if kappa is None:
        out["why"] = "every decision was the same, so chance agreement is 1 and kappa undefined"
    return out


def latest_votes(session: Session, volume_ids: list[int], before: datetime | None = None) -> Votes:
    """Each reviewer's latest decision per slice of these volumes (made before `before`)."""
    ids = select(func.max(Review.id)).where(Review.volume_id.in_(volume_ids))
    if before is not None:
        ids = ids.where(Review.created_at < before)
    ids = ids.group_by(Review.volume_id, Review.slice_index, Review.user_id)
    out: Votes = {}
    rows = session.scalars(
        select(Review).where(Review.id.in_(ids)).options(joinedload(Review.user))
    )
    for r in rows:
        out.setdefault((r.volume_id, r.slice_index), {})[r.user_id] = r
    return out


def _names(votes: Votes) -> dict[int, str]:
    return {uid: r.user.username for v in votes.values() for uid, r in v.items()}


def volume_agreement(session: Session, volume_id: int, within: set[int] | None = None) -> dict:
    votes = latest_votes(session, [volume_id])
    return summarize(votes, _names(votes), within)


def dataset_agreement(session: Session, dataset: DatasetVersion) -> dict:
    """Agreement over the slices of the version's source volumes, as it stood at the freeze."""
    # created_at is kept to the second (medsynth.json): the reviews of that second count too
    before = dataset.created_at + timedelta(seconds=1)
    votes = latest_votes(session, version_volume_ids(dataset), before=before)
    return summarize(votes, _names(votes))
