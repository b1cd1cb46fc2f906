"""ORM models. Every schema change is an Alembic revision in migrations/versions."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import JSON, ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.db import Base


def utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(16))  # admin | reviewer
    is_active: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


class ApiToken(Base):
    """A bearer token for scripts; only its SHA-256 is stored."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(100), default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column(default=None)

    user: Mapped[User] = relationship()


class Volume(Base):
    """An ingested CT volume. The upload is kept as sent; the cache holds int16 HU in RAS."""

    __tablename__ = "volumes"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(255))
    source_path: Mapped[str] = mapped_column(Text)  # the original file as uploaded / ingested
    source_sha256: Mapped[str] = mapped_column(String(64))
    mask_source_path: Mapped[str | None] = mapped_column(Text, default=None)
    cache_path: Mapped[str] = mapped_column(Text)  # .npy int16 HU, canonical RAS, [x, y, z]
    mask_cache_path: Mapped[str | None] = mapped_column(Text, default=None)  # .npy uint8
    shape: Mapped[list] = mapped_column(JSON)  # [x, y, z] after reorientation to RAS
    spacing: Mapped[list] = mapped_column(JSON)  # mm, [x, y, z]
    affine: Mapped[list] = mapped_column(JSON)  # 4x4 RAS affine of the cached array
    hu_min: Mapped[float]
    hu_max: Mapped[float]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), default=None)

    slices: Mapped[list[SliceInfo]] = relationship(
        back_populates="volume", order_by="SliceInfo.index", cascade="all, delete-orphan"
    )

    @property
    def has_mask(self) -> bool:
        return self.mask_cache_path is not None

    @property
    def num_slices(self) -> int:
        return int(self.shape[2])


class SliceInfo(Base):
    """Per axial slice: liver and tumour pixel counts from the mask (0 when there is none)."""

    __tablename__ = "slices"
    __table_args__ = (UniqueConstraint("volume_id", "index"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    volume_id: Mapped[int] = mapped_column(ForeignKey("volumes.id", ondelete="CASCADE"))
    index: Mapped[int]
    liver_pixels: Mapped[int] = mapped_column(default=0)
    tumour_pixels: Mapped[int] = mapped_column(default=0)

    volume: Mapped[Volume] = relationship(back_populates="slices")


class Review(Base):
    """One reviewer decision on one slice. Append-only: a change of mind is a new row."""

    __tablename__ = "reviews"
    __table_args__ = (Index("ix_reviews_volume_slice", "volume_id", "slice_index", "id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    volume_id: Mapped[int] = mapped_column(ForeignKey("volumes.id", ondelete="CASCADE"))
    slice_index: Mapped[int]
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    decision: Mapped[str] = mapped_column(String(16))  # approved | rejected
    label: Mapped[str] = mapped_column(String(16))  # normal | tumour
    note: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    user: Mapped[User] = relationship()


class DatasetVersion(Base):
    """An immutable, frozen set of approved slices with its export settings and content hash."""

    __tablename__ = "dataset_versions"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(255))
    resolution: Mapped[int]
    window: Mapped[str] = mapped_column(String(32))  # preset name, "W,L", or "hu"
    window_width: Mapped[float]
    window_level: Mapped[float]
    bit_depth: Mapped[int]  # 8 or 16
    content_hash: Mapped[str] = mapped_column(String(64))
    num_images: Mapped[int]
    num_tumour: Mapped[int] = mapped_column(default=0)
    zip_path: Mapped[str | None] = mapped_column(Text, default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), default=None)

    items: Mapped[list[DatasetItem]] = relationship(
        back_populates="dataset", order_by="DatasetItem.position", cascade="all, delete-orphan"
    )


class DatasetItem(Base):
    """One image of a dataset version, pointing at the approving review row (provenance)."""

    __tablename__ = "dataset_items"
    __table_args__ = (UniqueConstraint("dataset_id", "position"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    dataset_id: Mapped[int] = mapped_column(ForeignKey("dataset_versions.id", ondelete="CASCADE"))
    position: Mapped[int]
    volume_id: Mapped[int] = mapped_column(ForeignKey("volumes.id"))
    slice_index: Mapped[int]
    label: Mapped[str] = mapped_column(String(16))
    review_id: Mapped[int] = mapped_column(ForeignKey("reviews.id"))

    dataset: Mapped[DatasetVersion] = relationship(back_populates="items")
    volume: Mapped[Volume] = relationship()


class AuditEvent(Base):
    """Who did what, when: logins, uploads, dataset freezes, user changes."""

    __tablename__ = "audit_events"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), default=None)
    action: Mapped[str] = mapped_column(String(64))
    target: Mapped[str] = mapped_column(String(255), default="")
    detail: Mapped[dict] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
