"""ORM models. Every schema change is an Alembic revision in migrations/versions."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import JSON, ForeignKey, Index, String, Text, UniqueConstraint, false, text, true
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


# --- accounts: server-side sessions and login throttling (issue 16) ---------------------------


class LoginSession(Base):
    """A browser login. The cookie holds only a random id; its SHA-256 is the row's key, so
    ending the row (logout, password change, deactivation, an admin) ends the session at once."""

    __tablename__ = "login_sessions"
    __table_args__ = (Index("ix_login_sessions_user_ended", "user_id", "ended_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    sid_hash: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    csrf: Mapped[str] = mapped_column(String(64))
    client: Mapped[str] = mapped_column(String(64), default="")
    user_agent: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_seen_at: Mapped[datetime] = mapped_column(default=utcnow)
    ended_at: Mapped[datetime | None] = mapped_column(default=None)
    end_reason: Mapped[str | None] = mapped_column(String(32), default=None)

    user: Mapped[User] = relationship()


class LoginThrottle(Base):
    """Failed logins per account ("user:NAME") and per client address ("ip:ADDR"), in the
    database so a restart does not reset the back-off."""

    __tablename__ = "login_throttles"

    key: Mapped[str] = mapped_column(String(160), primary_key=True)
    failures: Mapped[int] = mapped_column(default=0)
    last_failure_at: Mapped[datetime] = mapped_column(default=utcnow)
    blocked_until: Mapped[datetime | None] = mapped_column(default=None)


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
    # issue 14 (curation): phantom volumes from `python -m app demo`; archived = hidden from
    # lists and freezes but kept for the audit trail and the versions that use it
    is_demo: Mapped[bool] = mapped_column(default=False, server_default=false())
    archived_at: Mapped[datetime | None] = mapped_column(default=None)
    # issue 12 (DICOM ingest): de-identified provenance. Keys are salted HMAC-SHA256 hashes
    # (patient_key groups a patient's volumes for patient-level splits); content_sha256 is the
    # hash of the canonical cache, so a re-upload is recognised however it is packed.
    patient_key: Mapped[str | None] = mapped_column(String(64), default=None, index=True)
    study_key: Mapped[str | None] = mapped_column(String(64), default=None)
    series_key: Mapped[str | None] = mapped_column(String(64), default=None, index=True)
    content_sha256: Mapped[str | None] = mapped_column(String(64), default=None, index=True)
    source_format: Mapped[str | None] = mapped_column(String(16), default="nifti")
    series_description: Mapped[str | None] = mapped_column(String(64), default=None)
    modality: Mapped[str | None] = mapped_column(String(16), default=None)
    kvp: Mapped[float | None] = mapped_column(default=None)
    kernel: Mapped[str | None] = mapped_column(String(64), default=None)
    contrast_phase: Mapped[str | None] = mapped_column(String(32), default=None)
    dicom_origin: Mapped[list | None] = mapped_column(JSON, default=None)  # LPS mm, 1st slice

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
    # made without sight of another reviewer's decision on the slice (revision 0013)
    independent: Mapped[bool] = mapped_column(default=True, server_default=true())

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
    # issue 14 (curation): masks in the export zip (written by export.py), the patient-level
    # split this version is part of (train | val | test, versions of one freeze share
    # split_group) and the filters it was composed with
    masks: Mapped[bool] = mapped_column(default=False, server_default=false())
    split: Mapped[str | None] = mapped_column(String(8), default=None)
    split_group: Mapped[str | None] = mapped_column(String(32), default=None, index=True)
    composition: Mapped[dict | None] = mapped_column(JSON, default=None)

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


# --- curation composition (issue 14) -------------------------------------------------------


class VolumeAssignment(Base):
    """A reviewer asked to review a volume (several reviewers per volume are allowed)."""

    __tablename__ = "volume_assignments"
    __table_args__ = (UniqueConstraint("volume_id", "user_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    volume_id: Mapped[int] = mapped_column(ForeignKey("volumes.id", ondelete="CASCADE"))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    assigned_by_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), default=None
    )
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    user: Mapped[User] = relationship(foreign_keys=[user_id])


class ViewerSettings(Base):
    """A user's own window presets ([{"name", "width", "level"}]) and default window."""

    __tablename__ = "viewer_settings"

    user_id: Mapped[int] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    default_window: Mapped[str | None] = mapped_column(String(32), default=None)
    presets: Mapped[list] = mapped_column(JSON, default=list)


class AuditEvent(Base):
    """Who did what, when: logins, uploads, dataset freezes, user changes."""

    __tablename__ = "audit_events"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), default=None)
    action: Mapped[str] = mapped_column(String(64))
    target: Mapped[str] = mapped_column(String(255), default="")
    detail: Mapped[dict] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)


class Job(Base):
    """A training run: the validated options, its run directory and the trainer process.

    pid, state and heartbeat live here (not in memory) so a restarted app can re-attach.
    """

    __tablename__ = "jobs"

    id: Mapped[int] = mapped_column(primary_key=True)
    dataset_id: Mapped[int] = mapped_column(ForeignKey("dataset_versions.id"), index=True)
    # queued | running | cancelling | cancelled | completed | failed | interrupted
    state: Mapped[str] = mapped_column(String(16), default="queued", index=True)
    options: Mapped[dict] = mapped_column(JSON, default=dict)  # the validated form
    run_dir: Mapped[str] = mapped_column(Text, default="")
    resolution: Mapped[int]
    total_kimg: Mapped[float]
    kimg: Mapped[float] = mapped_column(default=0.0)  # latest progress from stats.jsonl
    sec_per_kimg: Mapped[float | None] = mapped_column(default=None)
    last_stats: Mapped[dict | None] = mapped_column(JSON, default=None)
    device: Mapped[str] = mapped_column(String(32), default="cpu")  # cpu | cuda | cuda:N
    pid: Mapped[int | None] = mapped_column(default=None)
    attempts: Mapped[int] = mapped_column(default=0)  # launches: 1 + resumes
    exit_code: Mapped[int | None] = mapped_column(default=None)
    error: Mapped[str | None] = mapped_column(Text, default=None)
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(default=None)
    finished_at: Mapped[datetime | None] = mapped_column(default=None)
    heartbeat_at: Mapped[datetime | None] = mapped_column(default=None)
    cancel_requested_at: Mapped[datetime | None] = mapped_column(default=None)
    resume_from_snapshot_id: Mapped[int | None] = mapped_column(
        ForeignKey(
            "snapshots.id", use_alter=True, name="fk_jobs_resume_from_snapshot", ondelete="SET NULL"
        ),
        default=None,
    )
    # On a cluster (issue 20): the scheduler's id ("slurm:N"), its state in words, and one
    # entry per launch (segments of a run cut by time limits).
    scheduler_id: Mapped[str | None] = mapped_column(String(64), default=None)
    scheduler_state: Mapped[str | None] = mapped_column(Text, default=None)
    segments: Mapped[list | None] = mapped_column(JSON, default=None)

    dataset: Mapped[DatasetVersion] = relationship()
    created_by: Mapped[User | None] = relationship()
    snapshots: Mapped[list[Snapshot]] = relationship(
        back_populates="job",
        order_by="Snapshot.nimg",
        cascade="all, delete-orphan",
        foreign_keys="Snapshot.job_id",
    )
    resume_from: Mapped[Snapshot | None] = relationship(foreign_keys=[resume_from_snapshot_id])


class Snapshot(Base):
    """One full-state snapshot file a job wrote (snapshot-KKKKKK.pt) and its sample grid."""

    __tablename__ = "snapshots"
    # (job_id, nimg): two snapshots within one kimg are two rows (issue 10, migration 0009)
    __table_args__ = (UniqueConstraint("job_id", "nimg", name="uq_snapshots_job_nimg"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    kimg: Mapped[int]  # as in the file name: images shown // 1000
    # images shown (0009); rows made without it (tests, old code) take kimg × 1000
    nimg: Mapped[int] = mapped_column(
        default=lambda ctx: int(ctx.get_current_parameters()["kimg"]) * 1000, server_default="0"
    )
    path: Mapped[str] = mapped_column(Text)
    size_bytes: Mapped[int] = mapped_column(default=0)
    samples_path: Mapped[str | None] = mapped_column(Text, default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    job: Mapped[Job] = relationship(back_populates="snapshots", foreign_keys=[job_id])


# --- reader studies (issue 6) -----------------------------------------------------------------


class Study(Base):
    """A blinded real-vs-synthetic reader study; images and answer key are frozen at creation."""

    __tablename__ = "studies"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(255))
    snapshot_id: Mapped[int] = mapped_column(ForeignKey("snapshots.id"), index=True)
    dataset_id: Mapped[int] = mapped_column(ForeignKey("dataset_versions.id"))
    # where the real images came from: the training version, or a version held out from training
    real_dataset_id: Mapped[int] = mapped_column(ForeignKey("dataset_versions.id"))
    reals_held_out: Mapped[bool] = mapped_column(default=False)
    resolution: Mapped[int]
    n_real: Mapped[int]
    n_fake: Mapped[int]
    truncation: Mapped[float] = mapped_column(default=1.0)
    label: Mapped[int | None] = mapped_column(default=None)  # class for conditional generators
    # per-class image counts of a study that mixes classes: {"0": {"real": n, "fake": n}, ...}
    class_mix: Mapped[dict | None] = mapped_column(JSON, default=None)
    rate_usable: Mapped[bool] = mapped_column(default=False)
    seed: Mapped[int]  # first generator seed; synthetic images use seed .. seed + n_fake - 1
    # preparing (images being generated) | failed | open | closed
    state: Mapped[str] = mapped_column(String(16), default="open")
    prepared: Mapped[int] = mapped_column(default=0, server_default="0")  # images made so far
    prepare_error: Mapped[str | None] = mapped_column(Text, default=None)
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    closed_at: Mapped[datetime | None] = mapped_column(default=None)

    images: Mapped[list[StudyImage]] = relationship(
        back_populates="study", order_by="StudyImage.id", cascade="all, delete-orphan"
    )
    readers: Mapped[list[StudyReader]] = relationship(
        back_populates="study", order_by="StudyReader.id", cascade="all, delete-orphan"
    )


class StudyImage(Base):
    """One frozen, blinded image of a study; `synthetic` is the answer key (server-side only)."""

    __tablename__ = "study_images"

    id: Mapped[int] = mapped_column(primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("studies.id", ondelete="CASCADE"), index=True)
    synthetic: Mapped[bool]
    source: Mapped[str] = mapped_column(String(255))  # "seed 123" or the zip member name
    held_out: Mapped[bool] = mapped_column(default=False)  # real image not in the training set
    label: Mapped[int | None] = mapped_column(default=None)  # 0 normal, 1 tumour (None: unknown)
    path: Mapped[str] = mapped_column(Text)  # the blinded PNG under data/studies/ID/
    sha256: Mapped[str] = mapped_column(String(64))

    study: Mapped[Study] = relationship(back_populates="images")


class StudyReader(Base):
    """A reviewer assigned to a study, with the seed of their own image order."""

    __tablename__ = "study_readers"
    __table_args__ = (UniqueConstraint("study_id", "user_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("studies.id", ondelete="CASCADE"))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    order_seed: Mapped[int]
    removed_at: Mapped[datetime | None] = mapped_column(default=None)  # answers kept, no more

    study: Mapped[Study] = relationship(back_populates="readers")
    user: Mapped[User] = relationship()
    trials: Mapped[list[Trial]] = relationship(
        back_populates="reader", order_by="Trial.position", cascade="all, delete-orphan"
    )


class Trial(Base):
    """One image shown to one reader; the token is the only handle the reader ever sees."""

    __tablename__ = "study_trials"
    __table_args__ = (
        UniqueConstraint("reader_id", "position"),
        UniqueConstraint("reader_id", "image_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    reader_id: Mapped[int] = mapped_column(ForeignKey("study_readers.id", ondelete="CASCADE"))
    image_id: Mapped[int] = mapped_column(ForeignKey("study_images.id", ondelete="CASCADE"))
    position: Mapped[int]  # 0-based place in this reader's randomised order
    token: Mapped[str] = mapped_column(String(64), unique=True)
    issued_at: Mapped[datetime | None] = mapped_column(default=None)  # last time /next showed it
    answered_at: Mapped[datetime | None] = mapped_column(default=None)
    rating: Mapped[int | None] = mapped_column(default=None)  # 1 definitely real .. 5 synthetic
    usable: Mapped[bool | None] = mapped_column(default=None)
    comment: Mapped[str] = mapped_column(Text, default="")
    server_ms: Mapped[int | None] = mapped_column(default=None)
    client_ms: Mapped[int | None] = mapped_column(default=None)

    reader: Mapped[StudyReader] = relationship(back_populates="trials")
    image: Mapped[StudyImage] = relationship()


# --- metric runs (issue 5) --------------------------------------------------------------------

ACTIVE_METRIC_STATES = ("queued", "running")


class MetricRun(Base):
    """One `python -m trainer metrics` run on a snapshot, in the background.

    pid, state and progress live here so a restarted app can re-attach to (or close) the run.
    While a run is active, the partial unique index turns a double-clicked start into a no-op.
    """

    __tablename__ = "metric_runs"
    __table_args__ = (
        Index(
            "ux_metric_runs_active_request",
            "snapshot_id",
            "request_key",
            unique=True,
            sqlite_where=text("state IN ('queued', 'running')"),
            postgresql_where=text("state IN ('queued', 'running')"),
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    snapshot_id: Mapped[int] = mapped_column(
        ForeignKey("snapshots.id", ondelete="CASCADE"), index=True
    )
    # queued | running | completed | failed | cancelled (cancel_requested_at: cancelling)
    state: Mapped[str] = mapped_column(String(16), default="queued", index=True)
    metrics: Mapped[list] = mapped_column(JSON)  # canonical order, e.g. ["fid", "kid"]
    options: Mapped[dict] = mapped_column(JSON, default=dict)  # num, device, data zip, ...
    request_key: Mapped[str] = mapped_column(String(64))  # hash of metrics + options
    run_dir: Mapped[str] = mapped_column(Text, default="")  # runs/JOB_ID/metrics/RUN_ID
    pid: Mapped[int | None] = mapped_column(default=None)
    scheduler_id: Mapped[str | None] = mapped_column(String(64), default=None)  # 0011
    scheduler_state: Mapped[str | None] = mapped_column(Text, default=None)
    progress: Mapped[dict | None] = mapped_column(JSON, default=None)  # stage, done, total, ...
    result: Mapped[dict | None] = mapped_column(JSON, default=None)  # the CLI's JSON object
    error: Mapped[str | None] = mapped_column(Text, default=None)
    exit_code: Mapped[int | None] = mapped_column(default=None)
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(default=None)
    finished_at: Mapped[datetime | None] = mapped_column(default=None)
    cancel_requested_at: Mapped[datetime | None] = mapped_column(default=None)

    snapshot: Mapped[Snapshot] = relationship()
    created_by: Mapped[User | None] = relationship()


# --- utility runs (issue 13) ------------------------------------------------------------------


class UtilityRun(Base):
    """One `python -m trainer utility` run: does this snapshot's synthetic data help a task?

    Like a metric run, pid, state and progress live here so a restarted app can re-attach.
    """

    __tablename__ = "utility_runs"
    __table_args__ = (
        Index(
            "ux_utility_runs_active_request",
            "snapshot_id",
            "request_key",
            unique=True,
            sqlite_where=text("state IN ('queued', 'running')"),
            postgresql_where=text("state IN ('queued', 'running')"),
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    snapshot_id: Mapped[int] = mapped_column(
        ForeignKey("snapshots.id", ondelete="CASCADE"), index=True
    )
    train_dataset_id: Mapped[int] = mapped_column(ForeignKey("dataset_versions.id"))
    test_dataset_id: Mapped[int] = mapped_column(ForeignKey("dataset_versions.id"))
    task: Mapped[str] = mapped_column(String(32))  # segmentation | classification
    # queued | running | completed | failed | cancelled (cancel_requested_at: cancelling)
    state: Mapped[str] = mapped_column(String(16), default="queued", index=True)
    options: Mapped[dict] = mapped_column(JSON, default=dict)  # arms, fractions, seeds, zips...
    request_key: Mapped[str] = mapped_column(String(64))
    run_dir: Mapped[str] = mapped_column(Text, default="")  # runs/JOB_ID/utility/RUN_ID
    pid: Mapped[int | None] = mapped_column(default=None)
    scheduler_id: Mapped[str | None] = mapped_column(String(64), default=None)  # 0011
    scheduler_state: Mapped[str | None] = mapped_column(Text, default=None)
    progress: Mapped[dict | None] = mapped_column(JSON, default=None)
    result: Mapped[dict | None] = mapped_column(JSON, default=None)  # the CLI's JSON object
    error: Mapped[str | None] = mapped_column(Text, default=None)
    exit_code: Mapped[int | None] = mapped_column(default=None)
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(default=None)
    finished_at: Mapped[datetime | None] = mapped_column(default=None)
    cancel_requested_at: Mapped[datetime | None] = mapped_column(default=None)

    snapshot: Mapped[Snapshot] = relationship()
    train_dataset: Mapped[DatasetVersion] = relationship(foreign_keys=[train_dataset_id])
    test_dataset: Mapped[DatasetVersion] = relationship(foreign_keys=[test_dataset_id])
    created_by: Mapped[User | None] = relationship()


class MonitorLease(Base):
    """Which app instance runs the passes of one monitor (0012): `owner` holds it until
    `expires_at` (naive UTC) unless it renews; see app/services/monitor_lease.py."""

    __tablename__ = "monitor_leases"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    owner: Mapped[str] = mapped_column(String(160))
    expires_at: Mapped[datetime]


class SpeedProbe(Base):
    """This machine's measured training speed for one network and device (0014), from
    `trainer info speed`; `key` names the network, batch, precision and device."""

    __tablename__ = "speed_probes"

    key: Mapped[str] = mapped_column(String(400), primary_key=True)
    device: Mapped[str] = mapped_column(String(16))
    sec_per_kimg: Mapped[float]
    detail: Mapped[dict] = mapped_column(JSON)
    measured_at: Mapped[datetime] = mapped_column(default=utcnow)
