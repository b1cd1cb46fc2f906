"""Fixture data for dataset tests: a synthetic CT volume in the cache, and approvals."""

from __future__ import annotations

import hashlib

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.models import Review, SliceInfo, User, Volume
from app.services.curation.reviews import add_review
from app.settings import Settings


def off_centre_body(shape=(96, 80, 6), centre=(30, 50), radii=(18, 12)) -> np.ndarray:
    """int16 HU [x, y, z] RAS: air, an elliptic body (40 HU, a 90 HU 'liver' inside) well away
    from the image centre, and a small separate bright bar that is not the body."""
    x, y = np.mgrid[: shape[0], : shape[1]]
    body = ((x - centre[0]) / radii[0]) ** 2 + ((y - centre[1]) / radii[1]) ** 2 <= 1
    liver = ((x - centre[0] - 4) / 6.0) ** 2 + ((y - centre[1]) / 5.0) ** 2 <= 1
    plane = np.full(shape[:2], -1000, dtype=np.int16)
    plane[body] = 40
    plane[liver] = 90
    plane[shape[0] - 4 :, 2:6] = 200
    vol = np.repeat(plane[:, :, None], shape[2], axis=2)
    vol += np.arange(shape[2], dtype=np.int16)[None, None, :] * 3  # slices differ a little
    return np.asfortranarray(vol)


def add_volume(session: Session, settings: Settings, hu: np.ndarray, name: str) -> Volume:
    """Rows and a .npy cache for an int16 RAS volume, as ingest would leave them."""
    cache = settings.volumes_dir / f"{name}.npy"
    np.save(cache, np.asfortranarray(hu.astype(np.int16)))
    volume = Volume(
        name=name,
        source_path=str(cache),
        source_sha256=hashlib.sha256(hu.tobytes()).hexdigest(),
        cache_path=str(cache),
        shape=list(hu.shape),
        spacing=[0.75, 0.75, 2.5],
        affine=np.diag([0.75, 0.75, 2.5, 1.0]).tolist(),
        hu_min=float(hu.min()),
        hu_max=float(hu.max()),
    )
    volume.slices = [SliceInfo(index=i) for i in range(hu.shape[2])]
    session.add(volume)
    session.flush()
    return volume


def user(session: Session, username: str) -> User:
    return session.scalar(select(User).where(User.username == username))


def review(
    session: Session, volume: Volume, index: int, username: str, decision="approved", label="normal"
) -> Review:
    return add_review(session, volume, index, user(session, username), decision, label)


def curated(session: Session, settings: Settings, name: str = "phantom-a") -> Volume:
    """A volume with slices 1 (tumour), 2, 4 approved, 3 rejected, 0 and 5 left unreviewed."""
    vol = add_volume(session, settings, off_centre_body(), name)
    review(session, vol, 1, "reader1", "approved", "tumour")
    review(session, vol, 2, "reader2", "approved")
    review(session, vol, 3, "reader1", "approved")
    review(session, vol, 3, "reader2", "rejected")
    review(session, vol, 4, "reader1", "approved")
    return vol
