"""What the PACS-like viewer reads: raw display slices for client-side windowing, the HU probe,
coronal / sagittal reformats from the RAS cache, and each user's window presets."""

from __future__ import annotations

import numpy as np
from sqlalchemy.orm import Session

from app.errors import InvalidInput, NotFound
from app.imaging.render import slice_png
from app.imaging.window import PRESETS, Window
from app.models import User, ViewerSettings, Volume
from app.services.curation.volumes import check_index, mask_array, volume_array
from app.settings import Settings

# Built-in viewer presets: the export presets plus a portal-venous liver window (W150/L30
# washes out a contrast-enhanced liver).
VIEWER_PRESETS: dict[str, Window] = {**PRESETS, "liver-pv": Window("liver-pv", 200, 90)}
MASK_NAMES = {0: "background", 1: "liver", 2: "tumour"}
PLANES = ("coronal", "sagittal")


MAX_BLOCK = 32


def raw_block(
    settings: Settings, volume: Volume, start: int, count: int = 1, mask: bool = False
) -> tuple[bytes, int]:
    """Display-oriented slices start.. (at most `count`, to the end of the volume) as one
    buffer: all int16 LE HU [k, rows, cols], then with `mask` all uint8 labels. One request
    per block keeps wheel and cine scrolling ahead of the reader. Returns (bytes, count)."""
    check_index(volume, start)
    if not 1 <= count <= MAX_BLOCK:
        raise InvalidInput(f"count must be 1..{MAX_BLOCK}, got {count}")
    stop = min(start + count, volume.num_slices)
    hu = volume_array(settings, volume)[::-1, ::-1, start:stop].transpose(2, 1, 0)
    parts = [np.ascontiguousarray(hu, dtype="<i2").tobytes()]
    if mask:
        labels = mask_array(settings, volume)
        if labels is None:
            raise NotFound(f"volume {volume.id} has no mask")
        block = labels[::-1, ::-1, start:stop].transpose(2, 1, 0)
        parts.append(np.ascontiguousarray(block, dtype=np.uint8).tobytes())
    return b"".join(parts), stop - start


def probe(settings: Settings, volume: Volume, index: int, row: int, col: int) -> dict:
    """HU, voxel, RAS position (mm) and mask label at a display pixel of an axial slice.

    Display row r, column c of slice k is voxel (x = nx-1-c, y = ny-1-r, z = k) (see
    `axial_display`); the affine maps the voxel to RAS millimetres."""
    check_index(volume, index)
    nx, ny = int(volume.shape[0]), int(volume.shape[1])
    if not (0 <= row < ny and 0 <= col < nx):
        raise InvalidInput(f"row must be 0..{ny - 1} and col 0..{nx - 1}, got {row}, {col}")
    i, j, k = nx - 1 - col, ny - 1 - row, index
    hu = int(volume_array(settings, volume)[i, j, k])
    labels = mask_array(settings, volume)
    label = None if labels is None else MASK_NAMES.get(int(labels[i, j, k]), "other")
    position = np.asarray(volume.affine, float) @ np.array([i, j, k, 1.0])
    return {
        "row": row,
        "col": col,
        "voxel": [i, j, k],
        "position_mm": [round(float(v), 2) for v in position[:3]],
        "hu": hu,
        "label": label,
    }


def reformat(volume_hu: np.ndarray, plane: str, at: int) -> np.ndarray:
    """Coronal (at y) or sagittal (at x) plane as [rows, cols], superior up; coronal with the
    patient's right on the left, sagittal with anterior on the left."""
    if plane == "coronal":
        return volume_hu[::-1, at, ::-1].T  # rows: z high→low, cols: x high→low
    return volume_hu[at, ::-1, ::-1].T  # rows: z high→low, cols: y high→low


def reformat_png(
    settings: Settings, volume: Volume, plane: str, at: int | None, window: Window
) -> bytes:
    if plane not in PLANES:
        raise NotFound(f"plane must be coronal or sagittal, not {plane!r}")
    axis = 1 if plane == "coronal" else 0
    size = int(volume.shape[axis])
    at = size // 2 if at is None else at
    if not 0 <= at < size:
        raise InvalidInput(f"at must be 0..{size - 1} for the {plane} plane, got {at}")
    return slice_png(
        np.ascontiguousarray(reformat(volume_array(settings, volume), plane, at)), window
    )


def viewer_settings(session: Session, user: User) -> dict:
    row = session.get(ViewerSettings, user.id)
    return {
        "default_window": row.default_window if row else None,
        "presets": list(row.presets) if row else [],
    }


def save_viewer_settings(
    session: Session, user: User, default_window: str | None, presets: list[dict]
) -> dict:
    """Store the user's own presets and default window (a built-in or one of theirs)."""
    names = [p["name"].strip() for p in presets]
    if len(set(names)) != len(names):
        raise InvalidInput("preset names must be unique")
    clash = [n for n in names if n in VIEWER_PRESETS]
    if clash:
        raise InvalidInput(f"{clash[0]!r} is a built-in preset; choose another name")
    if default_window and default_window not in names and default_window not in VIEWER_PRESETS:
        raise InvalidInput(f"default_window {default_window!r} is not a preset")
    row = session.get(ViewerSettings, user.id) or ViewerSettings(user_id=user.id)
    row.default_window = default_window or None
    row.presets = [{**p, "name": p["name"].strip()} for p in presets]
    session.add(row)
    session.commit()
    return viewer_settings(session, user)


def user_window(session: Session, user: User) -> Window | None:
    """The user's default window, if they set one."""
    prefs = viewer_settings(session, user)
    name = prefs["default_window"]
    if not name:
        return None
    if name in VIEWER_PRESETS:
        return VIEWER_PRESETS[name]
    for p in prefs["presets"]:
        if p["name"] == name:
            return Window(name, float(p["width"]), float(p["level"]))
    return None
