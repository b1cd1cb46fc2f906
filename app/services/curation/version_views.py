"""What the dataset pages show about a version: thumbnails from its zip, reviewer and creator
names (read-only helpers, apart from the freeze logic in datasets.py)."""

from __future__ import annotations

import zipfile

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.errors import NotFound
from app.models import DatasetVersion, Review, User
from app.services.curation.datasets import dataset_zip, get_dataset
from app.services.curation.export import image_name
from app.services.curation.second_reads import hidden_from
from app.settings import Settings


def thumbnail(session: Session, settings: Settings, dataset_id: int, position: int) -> bytes:
    """One exported PNG, exactly as it is in the zip."""
    dataset = get_dataset(session, dataset_id)
    if not 0 <= position < dataset.num_images:
        raise NotFound(f"dataset {dataset_id} has images 0 to {dataset.num_images - 1}")
    with zipfile.ZipFile(dataset_zip(session, settings, dataset_id)) as zf:
        return zf.read(image_name(position))


def reviewers(session: Session, dataset: DatasetVersion, viewer: User) -> dict[int, str]:
    """review id -> reviewer name, for the grid's captions; none of another reviewer's names
    on slices the viewer is still to read blind (second_reads)."""
    ids = [item.review_id for item in dataset.items]
    rows = session.execute(
        select(Review, User.username)
        .join(User, User.id == Review.user_id)
        .where(Review.id.in_(ids))
    ).all()
    hidden = hidden_from(session, viewer, [r for r, _ in rows])
    return {r.id: name for r, name in rows if r.id not in hidden}


def creators(session: Session, datasets: list[DatasetVersion]) -> dict[int, str]:
    """user id -> name of whoever froze these versions."""
    ids = {d.created_by_id for d in datasets if d.created_by_id is not None}
    if not ids:
        return {}
    return dict(session.execute(select(User.id, User.username).where(User.id.in_(ids))).all())
