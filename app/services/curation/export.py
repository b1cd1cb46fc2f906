"""Dataset zips in the StyleGAN2-ADA layout, rendered deterministically from the volume cache.

Per slice: the cached HU array in display orientation -> largest body component (> -500 HU) ->
square crop centred on its bounding box (4 % margin, air outside the image) -> LANCZOS resize on
float HU -> linear map of [hu_min, hu_max] to 0..255 (L) or 0..65535 (I;16) -> PNG. The same
dataset version and volume cache always give the same bytes.

With masks, each image's label map (0 background, 1 liver, 2 tumour) goes through the same crop
box with nearest neighbour into `imgNNNNNNNN.mask.npy` (uint8 [R, R]) beside the PNG; `.npy`
keeps the zip readable by StyleGAN2-ADA's own loader, which takes every image file as an image.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import tempfile
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from sqlalchemy.orm import Session

from app.errors import Conflict, NotFound
from app.imaging.crop import (
    AIR_HU,
    BODY_THRESHOLD_HU,
    CROP_MARGIN,
    body_crop_box,
    crop_and_resize,
)
from app.imaging.render import axial_display
from app.imaging.window import Window, to_uint8
from app.models import DatasetVersion, Review, Volume
from app.services.curation.export_masks import (
    has_masks,
    masks_doc,
    median_spacing,
    pixel_spacing,
    write_mask,
)
from app.services.curation.volumes import mask_array, volume_array
from app.settings import Settings

HU_MODE = ("hu", 4095.0, 1023.5)  # name, width, level: [-1024, 3071], 12-bit CT
PNG_COMPRESS_LEVEL = 6
ZIP_DATE = (1980, 1, 1, 0, 0, 0)
LABELS = {"normal": 0, "tumour": 1}
FORMAT = "medsynth-dataset/1"


@dataclass(frozen=True)
class ExportSettings:
    """What decides the pixels: size, bit depth and the HU range mapped linearly onto them."""

    resolution: int
    bit_depth: int
    window: str
    width: float
    level: float

    @classmethod
    def of(cls, d: DatasetVersion) -> ExportSettings:
        return cls(d.resolution, d.bit_depth, d.window, d.window_width, d.window_level)

    @property
    def hu_min(self) -> float:
        return self.level - self.width / 2

    @property
    def hu_max(self) -> float:
        return self.level + self.width / 2

    @property
    def max_value(self) -> int:
        return 255 if self.bit_depth == 8 else 65535

    def pixel_to_hu(self) -> dict[str, float]:
        """HU = scale * pixel + offset, the inverse of `to_pixels` up to rounding."""
        return {"scale": self.width / self.max_value, "offset": self.hu_min}


def to_pixels(hu: np.ndarray, es: ExportSettings) -> np.ndarray:
    """Linear map of [hu_min, hu_max] onto 0..max_value, clipped and rounded half to even;
    8-bit goes through the viewer's own mapping so export and viewer agree pixel for pixel."""
    if es.bit_depth == 8:
        return to_uint8(hu, Window(es.window, es.width, es.level))
    scaled = (np.asarray(hu, np.float32) - np.float32(es.hu_min)) * np.float32(65535 / es.width)
    return np.clip(np.rint(scaled), 0, 65535).astype(np.uint16)


def encode_png(pixels: np.ndarray) -> bytes:
    """PNG with no text or time chunks and a fixed compression level: same pixels, same bytes."""
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG", compress_level=PNG_COMPRESS_LEVEL)
    return buf.getvalue()


def render_slice(hu: np.ndarray, es: ExportSettings) -> tuple[bytes, tuple[int, int, int]]:
    """One display-oriented HU slice -> (PNG bytes, crop box in the display slice)."""
    box = body_crop_box(hu)
    resized = crop_and_resize(hu, box, es.resolution)
    return encode_png(to_pixels(resized, es)), box


@dataclass(frozen=True)
class ImageRecord:
    """One exported image and its provenance, in dataset order."""

    file: str
    sha256: str
    label: int
    provenance: dict
    mask_file: str | None = None
    mask_sha256: str | None = None


def image_name(position: int) -> str:
    return f"img{position:08d}.png"


def content_hash(es: ExportSettings, images: list[ImageRecord]) -> str:
    """SHA-256 (hex) of the canonical JSON (sorted keys, no spaces, UTF-8) of
    {"format", "settings": {resolution, bit_depth, hu_min, hu_max},
    "images": [[file, sha256 of the PNG bytes, label 0|1], ...] in dataset order}.
    Names, ids, dates and sources are left out: same pixels + labels + settings, same hash."""
    doc = {
        "format": FORMAT,
        "settings": {
            "resolution": es.resolution,
            "bit_depth": es.bit_depth,
            "hu_min": es.hu_min,
            "hu_max": es.hu_max,
        },
        "images": [[im.file, im.sha256, im.label] for im in images],
    }
    if any(im.mask_file for im in images):  # absent without masks: old hashes stay valid
        doc["masks"] = [[im.mask_file, im.mask_sha256] for im in images]
    canonical = json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def _load_arrays(settings: Settings, volume: Volume, masks: bool) -> tuple:
    """(HU array, label array or None) of one volume; a clear 409 when either is unusable."""
    try:
        hu = volume_array(settings, volume)
        labels = mask_array(settings, volume) if masks else None
    except (OSError, ValueError) as exc:
        detail = f"the cached array of volume {volume.id} is missing or unreadable"
        raise Conflict(f"{detail}; ingest {volume.name!r} again") from exc
    if masks and labels is None:
        raise Conflict(
            f"volume {volume.id} ({volume.name!r}) has no segmentation mask; freeze without "
            "masks, or ingest the volume with its mask"
        )
    return hu, labels


def render_images(
    session: Session,
    settings: Settings,
    items: list,
    es: ExportSettings,
    workdir: Path,
    masks: bool = False,
) -> list[ImageRecord]:
    """Render every item (volume_id, slice_index, label, review_id) into workdir/imgNNNNNNNN.png
    and, with `masks`, its label map into workdir/imgNNNNNNNN.mask.npy."""
    records, arrays = [], {}
    for position, item in enumerate(items):
        volume = session.get(Volume, item.volume_id)
        review = session.get(Review, item.review_id)
        if volume is None or review is None:
            raise NotFound(f"volume {item.volume_id} or review {item.review_id} no longer exists")
        if volume.id not in arrays:
            arrays.clear()  # one memory-mapped volume at a time
            arrays[volume.id] = _load_arrays(settings, volume, masks)
        hu_volume, label_volume = arrays[volume.id]
        hu = axial_display(hu_volume, item.slice_index)
        png, (top, left, side) = render_slice(hu, es)
        name = image_name(position)
        (workdir / name).write_bytes(png)
        prov = {
            "file": name,
            "label": LABELS[item.label],
            "volume_id": volume.id,
            "volume_name": volume.name,
            "source_sha256": volume.source_sha256,
            "slice_index": item.slice_index,
            "review_id": review.id,
            "reviewer": review.user.username,
            "reviewed_at": review.created_at.isoformat() + "Z",
            "crop": {"top": top, "left": left, "side": side},
            "pixel_spacing_mm": pixel_spacing(volume, side, es.resolution),
        }
        mask_file = mask_sha = None
        if label_volume is not None:
            labels = axial_display(label_volume, item.slice_index)
            mask_file, mask_sha, prov["mask"] = write_mask(
                labels, (top, left, side), es.resolution, workdir, name
            )
        sha = hashlib.sha256(png).hexdigest()
        records.append(ImageRecord(name, sha, LABELS[item.label], prov, mask_file, mask_sha))
    return records


def provenance(dataset: DatasetVersion, es: ExportSettings, images: list[ImageRecord]) -> dict:
    """medsynth.json: everything needed to trace an image back and to turn pixels into HU."""
    return {
        "masks": masks_doc(images),
        "pixel_spacing_mm": median_spacing(images),
        "format": FORMAT,
        "dataset_id": dataset.id,
        "name": dataset.name,
        "created_at": dataset.created_at.isoformat() + "Z",
        "content_hash": dataset.content_hash,
        "mode": "hu" if es.window == "hu" else "window",
        "window": {"name": es.window, "width": es.width, "level": es.level},
        "hu_min": es.hu_min,
        "hu_max": es.hu_max,
        "hu_mapping": {"lo": es.hu_min, "hi": es.hu_max},
        "pixel_to_hu": es.pixel_to_hu(),
        "bit_depth": es.bit_depth,
        "resolution": es.resolution,
        "labels": {"0": "normal", "1": "tumour"},
        "num_images": len(images),
        "num_tumour": sum(im.label for im in images),
        "pipeline": {
            "orientation": "axial, radiological display (patient's left on the image right)",
            "crop": f"square on the largest component > {BODY_THRESHOLD_HU:g} HU, "
            f"margin {CROP_MARGIN:g} per side, {AIR_HU:g} HU outside the image",
            "resample": "PIL LANCZOS on float HU",
            "pixels": "clip(round((HU - hu_min) * max_value / (hu_max - hu_min)), 0, max_value)",
        },
        "images": [im.provenance for im in images],
    }


def _zinfo(name: str, compress_type: int) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, date_time=ZIP_DATE)
    info.compress_type = compress_type
    info.create_system = 3
    info.external_attr = 0o644 << 16
    return info


def _json_bytes(doc: dict) -> bytes:
    return (json.dumps(doc, sort_keys=True, indent=1, ensure_ascii=False) + "\n").encode()


@contextmanager
def atomic_path(final: Path) -> Iterator[Path]:
    """A temporary path beside `final` that replaces it only if the block succeeds."""
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent)
    os.close(fd)
    os.chmod(tmp, 0o644)  # mkstemp's 0600 would make exported zips unreadable to others
    try:
        yield Path(tmp)
        os.replace(tmp, final)
    finally:
        Path(tmp).unlink(missing_ok=True)


def write_zip(
    out: Path, dataset: DatasetVersion, es: ExportSettings, images: list, workdir: Path
) -> None:
    """Entries in name order with fixed dates and modes; PNGs stored (already deflated)."""
    labels: dict = {"labels": [[im.file, im.label] for im in images]}
    if any(im.mask_file for im in images):
        labels["masks"] = [[im.file, im.mask_file] for im in images]
    members = sorted(
        [(im.file, zipfile.ZIP_STORED) for im in images]  # PNGs: already deflated
        + [(im.mask_file, zipfile.ZIP_DEFLATED) for im in images if im.mask_file]
    )
    with atomic_path(out) as tmp:
        with zipfile.ZipFile(tmp, "w") as zf:
            head = _zinfo("dataset.json", zipfile.ZIP_DEFLATED)
            zf.writestr(head, _json_bytes(labels), compresslevel=6)
            for name, kind in members:
                zf.writestr(_zinfo(name, kind), (workdir / name).read_bytes(), compresslevel=6)
            doc = _json_bytes(provenance(dataset, es, images))
            zf.writestr(_zinfo("medsynth.json", zipfile.ZIP_DEFLATED), doc, compresslevel=6)
        with tmp.open("rb+") as f:
            os.fsync(f.fileno())


def stored_zip(dataset: DatasetVersion) -> Path | None:
    """The zip written at freeze time, if it is still there."""
    path = Path(dataset.zip_path) if dataset.zip_path else None
    return path if path is not None and path.is_file() else None


def export_zip(
    session: Session, settings: Settings, dataset_id: int, out: Path, rerender: bool = False
) -> Path:
    """Write a version's zip to `out`: a copy of the frozen zip, or (when it is gone or
    `rerender`) a fresh render from the volume cache, which must match the content hash."""
    dataset = session.get(DatasetVersion, dataset_id)
    if dataset is None:
        raise NotFound(f"no dataset version with id {dataset_id}")
    out = Path(out)
    source = None if rerender else stored_zip(dataset)
    if source is not None:
        if source.resolve() != out.resolve():
            with atomic_path(out) as tmp:
                shutil.copyfile(source, tmp)
        return out
    es = ExportSettings.of(dataset)
    with tempfile.TemporaryDirectory(dir=settings.tmp_dir) as work:
        images = render_images(
            session, settings, dataset.items, es, Path(work), masks=has_masks(dataset)
        )
        if content_hash(es, images) != dataset.content_hash:
            raise Conflict(
                f"dataset version {dataset_id} no longer renders to its content hash "
                f"{dataset.content_hash[:12]}: the volume cache or the export code changed"
            )
        write_zip(out, dataset, es, images, Path(work))
    return out
