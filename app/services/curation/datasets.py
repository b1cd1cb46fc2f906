"""Dataset versions: freeze approved slices into immutable, hashed zips (one, or a patient-level
train / val / test split), and the held-out check other features rely on."""

from __future__ import annotations

import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.errors import Conflict, InvalidInput, NotFound
from app.imaging.window import PRESETS as WINDOW_PRESETS
from app.imaging.window import parse_window
from app.models import DatasetItem, DatasetVersion, Review, User, utcnow
from app.services.curation import audit
from app.services.curation.composition import (
    SPLITS,
    Filters,
    Split,
    check_split,
    count_by_volume,
    split_volumes,
)
from app.services.curation.export import (
    HU_MODE,
    ExportSettings,
    content_hash,
    render_images,
    stored_zip,
    write_zip,
)
from app.services.curation.volumes import patient_key
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
    """Approved slices of the unarchived volumes (what a freeze without filters takes)."""
    rows = count_by_volume(session, Filters())
    return ApprovedSummary(sum(r.total for r in rows), sum(r.tumour for r in rows))


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
    *,
    filters: Filters | None = None,
    masks: bool = False,
) -> DatasetVersion:
    """Freeze the approved slices the filters keep (default: every unarchived volume, latest
    review per slice) into one version and its zip, and commit.

    The images are rendered before any row is written, so reviewers are not blocked by a
    long freeze. A failure leaves no rows and no files behind."""
    params = validate(name, resolution, window, bit_depth)
    filters = filters or Filters()
    reviews = [r for row in count_by_volume(session, filters) for r in row.reviews]
    if not reviews:
        raise Conflict(_nothing_to_freeze(filters))
    parts = {None: reviews}
    return _freeze_parts(session, settings, params, parts, user, filters, masks)[None]


def freeze_split(
    session: Session,
    settings: Settings,
    name: str,
    resolution: int,
    window: str,
    bit_depth: int,
    user: User,
    *,
    split: Split,
    filters: Filters | None = None,
    masks: bool = False,
) -> dict[str, DatasetVersion | None]:
    """Freeze train / val / test versions split by patient (volume when no patient key), in
    one transaction; a split with fraction 0 answers None."""
    params = validate(name, resolution, window, bit_depth)
    filters = filters or Filters()
    rows = count_by_volume(session, filters)
    if not any(r.total for r in rows):
        raise Conflict(_nothing_to_freeze(filters))
    parts = {
        role: [r for row in part for r in row.reviews]
        for role, part in split_volumes(rows, check_split(split)).items()
    }
    parts = {role: reviews for role, reviews in parts.items() if reviews}
    versions = _freeze_parts(session, settings, params, parts, user, filters, masks, split)
    return {role: versions.get(role) for role in SPLITS}


def _nothing_to_freeze(filters: Filters) -> str:
    if filters == Filters():
        return "no approved slices to freeze: approve slices in the viewer first"
    return "no approved slices match these volumes and filters: widen the selection"


def _freeze_parts(
    session: Session,
    settings: Settings,
    params: tuple,
    parts: dict[str | None, list[Review]],
    user: User,
    filters: Filters,
    masks: bool,
    split: Split | None = None,
) -> dict[str | None, DatasetVersion]:
    """Write one version (and zip) per part, then commit once; on failure remove every zip."""
    group = uuid.uuid4().hex if split is not None else None
    composition = filters.as_dict() | (
        {"split": {"val": split.val, "test": split.test, "seed": split.seed}} if split else {}
    )
    written: list[Path] = []
    versions = {}
    try:
        for role, reviews in parts.items():
            d = _build_version(session, settings, params, reviews, user, masks, written)
            d.split, d.split_group, d.composition = role, group, composition
            versions[role] = d
        session.commit()
    except BaseException:
        session.rollback()
        for path in written:
            path.unlink(missing_ok=True)
        raise
    return versions


def _build_version(
    session: Session,
    settings: Settings,
    params: tuple,
    reviews: list[Review],
    user: User,
    masks: bool,
    written: list[Path],
) -> DatasetVersion:
    """Render, hash and write one version's zip; adds its rows (flushed, not committed)."""
    name, resolution, (wname, width, level), bit_depth = params
    dataset = DatasetVersion(
        name=name,
        resolution=resolution,
        window=wname,
        window_width=width,
        window_level=level,
        bit_depth=bit_depth,
        masks=masks,
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
        images = render_images(session, settings, dataset.items, es, Path(work), masks=masks)
        dataset.content_hash = content_hash(es, images)
        session.add(dataset)
        session.flush()  # the id goes into medsynth.json and the file name
        final = (settings.datasets_dir / f"dataset-{dataset.id:06d}.zip").resolve()
        written.append(final)
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
    session.flush()
    return dataset


def version_volume_ids(dataset: DatasetVersion) -> list[int]:
    """The source volumes of a version's images."""
    return sorted({item.volume_id for item in dataset.items})


def check_disjoint(train_version: DatasetVersion, heldout_version: DatasetVersion) -> None:
    """Refuse a "held-out" version that shares a source volume or patient with the training
    version (studies and utility runs call this before using it as held out)."""
    if train_version.id == heldout_version.id:
        raise Conflict(f"dataset version {train_version.id} cannot be held out from itself")
    train = {patient_key(item.volume): item.volume_id for item in train_version.items}
    shared = sorted(
        {item.volume_id for item in heldout_version.items if patient_key(item.volume) in train}
    )
    if shared:
        raise Conflict(
            f"dataset version {heldout_version.id} is not held out from version "
            f"{train_version.id}: both contain volume(s) {', '.join(map(str, shared))} "
            "(or the same patient); freeze a patient-level split instead"
        )


def heldout_candidates(session: Session, train_version: DatasetVersion) -> list[DatasetVersion]:
    """Versions that may serve as held out for `train_version` (its split's val/test first)."""
    out = []
    for d in list_datasets(session):
        try:
            check_disjoint(train_version, d)
        except Conflict:
            continue
        out.append(d)
    group = train_version.split_group
    return sorted(out, key=lambda d: (not (group and d.split_group == group), -d.id))


def split_siblings(session: Session, dataset: DatasetVersion) -> list[DatasetVersion]:
    """The train / val / test versions frozen together with this one (itself included)."""
    if not dataset.split_group:
        return []
    query = select(DatasetVersion).where(DatasetVersion.split_group == dataset.split_group)
    order = {name: i for i, name in enumerate(SPLITS)}
    return sorted(session.scalars(query), key=lambda d: order.get(d.split or "", 9))


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
