"""Dataset versions: freeze the currently approved slices into an immutable, hashed zip."""

from __future__ import annotations

import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.errors import Conflict, InvalidInput, NotFound
from app.imaging.window import PRESETS as WINDOW_PRESETS
from app.imaging.window import parse_window
from app.models import DatasetItem, DatasetVersion, Review, User, utcnow
from app.services.curation import audit
from app.services.curation.export import (
    HU_MODE,
    ExportSettings,
    content_hash,
    image_name,
    render_images,
    stored_zip,
    write_zip,
)
from app.services.curation.reviews import approved_reviews
from app.settings import Settings

RESOLUTIONS = tuple(2**k for k in range(4, 11))  # 16 .. 1024
BIT_DEPTHS = (8, 16)
PRESETS = tuple(WINDOW_PRESETS)


@dataclass(frozen=True)
class ApprovedSummary:
    """What a freeze would take right now."""

    total: int
    tumour: int

    @property
    def normal(self) -> int:
        return self.total - self.tumour


def approved_summary(session: Session) -> ApprovedSummary:
    reviews = approved_reviews(session)
    return ApprovedSummary(len(reviews), sum(r.label == "tumour" for r in reviews))


def parse_export_window(spec: str) -> tuple[str, float, float]:
    """(name, width, level) for a preset, "W,L" or "hu" (the full [-1024, 3071] HU range)."""
    spec = (spec or "").strip()
    if spec.lower() == "hu":
        return HU_MODE
    try:
        window = parse_window(spec)
    except InvalidInput as exc:
        raise InvalidInput(f"{exc.detail}; or 'hu' for the full HU range") from exc
    return window.name, float(window.width), float(window.level)


def validate(name: str, resolution: int, window: str, bit_depth: int) -> tuple:
    """Check the freeze form; returns (name, resolution, (window, width, level), bit_depth)."""
    name = (name or "").strip()
    if not name:
        raise InvalidInput("name must not be empty")
    if len(name) > 255:
        raise InvalidInput("name must be at most 255 characters")
    if resolution not in RESOLUTIONS:
        raise InvalidInput(
            f"resolution must be a power of two from 16 to 1024 "
            f"({', '.join(map(str, RESOLUTIONS))}), got {resolution}"
        )
    if bit_depth not in BIT_DEPTHS:
        raise InvalidInput(f"bit_depth must be 8 or 16, got {bit_depth}")
    return name, resolution, parse_export_window(window), bit_depth


def freeze_dataset(
    session: Session,
    settings: Settings,
    name: str,
    resolution: int,
    window: str,
    bit_depth: int,
    user: User,
) -> DatasetVersion:
    """Freeze the approved slices (latest review per slice) and write the version's zip.

    The images are rendered before any row is written, so reviewers are not blocked by a
    long freeze; the caller commits. A failure leaves no rows and no files behind."""
    name, resolution, (wname, width, level), bit_depth = validate(
        name, resolution, window, bit_depth
    )
    reviews = approved_reviews(session)
    if not reviews:
        raise Conflict("no approved slices to freeze: approve slices in the viewer first")
    dataset = DatasetVersion(
        name=name,
        resolution=resolution,
        window=wname,
        window_width=width,
        window_level=level,
        bit_depth=bit_depth,
        content_hash="",
        num_images=len(reviews),
        num_tumour=sum(r.label == "tumour" for r in reviews),
        created_at=utcnow().replace(microsecond=0),  # in medsynth.json: fixed at freeze
        created_by_id=user.id,
    )
    dataset.items = [
        DatasetItem(
            position=i,
            volume_id=r.volume_id,
            slice_index=r.slice_index,
            label=r.label,
            review_id=r.id,
        )
        for i, r in enumerate(reviews)
    ]
    es = ExportSettings.of(dataset)
    with tempfile.TemporaryDirectory(dir=settings.tmp_dir) as work:
        images = render_images(session, settings, dataset.items, es, Path(work))
        dataset.content_hash = content_hash(es, images)
        session.add(dataset)
        session.flush()  # the id goes into medsynth.json and the file name
        final = (settings.datasets_dir / f"dataset-{dataset.id:06d}.zip").resolve()
        write_zip(final, dataset, es, images, Path(work))
    dataset.zip_path = str(final)
    audit.record(
        session,
        "dataset.freeze",
        user,
        f"dataset:{dataset.id}",
        name=name,
        content_hash=dataset.content_hash,
        num_images=dataset.num_images,
        resolution=resolution,
        window=wname,
        bit_depth=bit_depth,
    )
    try:
        session.flush()
    except BaseException:
        final.unlink(missing_ok=True)
        raise
    return dataset


def list_datasets(session: Session) -> list[DatasetVersion]:
    return list(session.scalars(select(DatasetVersion).order_by(DatasetVersion.id.desc())))


def get_dataset(session: Session, dataset_id: int) -> DatasetVersion:
    dataset = session.get(DatasetVersion, dataset_id)
    if dataset is None:
        raise NotFound(f"no dataset version with id {dataset_id}")
    return dataset


def dataset_zip(session: Session, settings: Settings, dataset_id: int) -> Path:
    """The version's zip on disk, re-rendered (and checked against the hash) if it went missing."""
    from app.services.curation.export import export_zip

    dataset = get_dataset(session, dataset_id)
    path = stored_zip(dataset)
    if path is None:
        path = (settings.datasets_dir / f"dataset-{dataset.id:06d}.zip").resolve()
        export_zip(session, settings, dataset.id, path, rerender=True)
        dataset.zip_path = str(path)
        session.commit()
    return path


def thumbnail(session: Session, settings: Settings, dataset_id: int, position: int) -> bytes:
    """One exported PNG, exactly as it is in the zip."""
    dataset = get_dataset(session, dataset_id)
    if not 0 <= position < dataset.num_images:
        raise NotFound(f"dataset {dataset_id} has images 0 to {dataset.num_images - 1}")
    with zipfile.ZipFile(dataset_zip(session, settings, dataset_id)) as zf:
        return zf.read(image_name(position))


def reviewers(session: Session, dataset: DatasetVersion) -> dict[int, str]:
    """review id -> reviewer name, for the grid's captions."""
    ids = [item.review_id for item in dataset.items]
    rows = session.execute(
        select(Review.id, User.username)
        .join(User, User.id == Review.user_id)
        .where(Review.id.in_(ids))
    )
    return dict(rows.all())


def creators(session: Session, datasets: list[DatasetVersion]) -> dict[int, str]:
    """user id -> name of whoever froze these versions."""
    ids = {d.created_by_id for d in datasets if d.created_by_id is not None}
    if not ids:
        return {}
    return dict(session.execute(select(User.id, User.username).where(User.id.in_(ids))).all())
