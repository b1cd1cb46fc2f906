"""The export pipeline and the dataset zip: centring, PNG modes, HU mapping, determinism."""

from __future__ import annotations

import io
import json
import zipfile

import numpy as np
import pytest
from PIL import Image

from app.db import session_scope
from app.errors import Conflict
from app.imaging.render import axial_display
from app.models import DatasetVersion
from app.services.accounts.users import create_user
from app.services.curation.datasets import freeze_dataset
from app.services.curation.export import ExportSettings, export_zip, render_slice
from tests.app.curation_data import curated, off_centre_body, review, user
from tests.conftest import PASSWORD

LIVER8 = ExportSettings(64, 8, "liver", 150.0, 30.0)


def _decode(png: bytes) -> Image.Image:
    return Image.open(io.BytesIO(png))


def _chunks(png: bytes) -> list[bytes]:
    out, pos = [], 8
    while pos < len(png):
        length = int.from_bytes(png[pos : pos + 4], "big")
        out.append(png[pos + 4 : pos + 8])
        pos += 12 + length
    return out


def test_off_centre_body_comes_out_centred():
    hu = axial_display(off_centre_body(), 2)
    rows, cols = np.nonzero((hu > -500) & (hu < 150))  # the body, not the bright bar
    assert abs((rows.min() + rows.max()) / 2 - hu.shape[0] / 2) > 10  # really off-centre
    assert abs((cols.min() + cols.max()) / 2 - hu.shape[1] / 2) > 10

    png, (top, left, side) = render_slice(hu, LIVER8)
    pixels = np.asarray(_decode(png))
    assert pixels.shape == (64, 64)
    body = pixels > 60  # 40 HU is ~144 in the liver window, air is 0
    r, c = np.nonzero(body)
    assert abs((r.min() + r.max()) / 2 - 31.5) <= 1 and abs((c.min() + c.max()) / 2 - 31.5) <= 1
    extent = max(r.max() - r.min(), c.max() - c.min()) + 1
    assert 54 <= extent <= 61  # the body fills the square up to a small margin
    assert side == 40  # ceil(37 * 1.08): the bar at the image edge is not the body


def test_crop_beyond_the_image_is_padded_with_air():
    hu = np.full((40, 40), -1000, np.int16)
    hu[:, :12] = 50  # body cut off by the left image border
    png, (top, left, side) = render_slice(hu, LIVER8)
    assert left < 0 and top < 0
    pixels = np.asarray(_decode(png))
    assert pixels[32, :4].max() == 0 and pixels[32, 30] > 100


def test_all_air_slice_still_renders():
    png, box = render_slice(np.full((30, 20), -1000, np.int16), LIVER8)
    assert np.asarray(_decode(png)).max() == 0 and box[2] >= 30


@pytest.mark.parametrize("bits, mode, dtype", [(8, "L", np.uint8), (16, "I;16", np.uint16)])
def test_png_mode_size_and_no_text_chunks(bits, mode, dtype):
    es = ExportSettings(32, bits, "abdomen", 400.0, 50.0)
    png, _ = render_slice(axial_display(off_centre_body(), 0), es)
    image = _decode(png)
    assert image.mode == mode and image.size == (32, 32)
    assert np.asarray(image).dtype == dtype
    assert set(_chunks(png)) == {b"IHDR", b"IDAT", b"IEND"}


@pytest.mark.parametrize("bits, tolerance", [(16, 0.05), (8, 8.1)])
def test_hu_mode_pixels_map_back_to_hu(bits, tolerance):
    es = ExportSettings(32, bits, "hu", 4095.0, 1023.5)
    assert (es.hu_min, es.hu_max) == (-1024.0, 3071.0)
    hu = np.full((64, 64), -1000, np.int16)
    hu[8:56, 8:56] = 40
    hu[24:40, 24:40] = 1500
    pixels = np.asarray(_decode(render_slice(hu, es)[0])).astype(np.float64)
    p2h = es.pixel_to_hu()
    back = pixels * p2h["scale"] + p2h["offset"]
    assert abs(back[16, 16] - 1500) <= tolerance and abs(back[6, 16] - 40) <= tolerance


def test_window_16_bit_spans_the_whole_range():
    es = ExportSettings(16, 16, "liver", 150.0, 30.0)
    hu = np.full((16, 16), 105, np.int16)  # the top of the liver window...
    hu[:, :8] = -45  # ...and its bottom; the crop covers everything (all "body")
    pixels = np.asarray(_decode(render_slice(hu, es)[0]))
    assert pixels.min() == 0 and pixels.max() == 65535


@pytest.fixture
def sessions(db):
    with session_scope(db) as s:
        for name in ("admin", "reader1", "reader2"):
            create_user(s, name, "admin" if name == "admin" else "reviewer", PASSWORD)
    return db


def _freeze(sessions, settings, name="v1", window="liver", bits=8, res=64) -> int:
    with session_scope(sessions) as s:
        return freeze_dataset(s, settings, name, res, window, bits, user(s, "admin")).id


def test_zip_layout_labels_and_provenance(sessions, settings):
    with session_scope(sessions) as s:
        vol = curated(s, settings)
        vol_id, vol_sha = vol.id, vol.source_sha256
    dataset_id = _freeze(sessions, settings, window="abdomen")
    with session_scope(sessions) as s:
        d = s.get(DatasetVersion, dataset_id)
        zip_path, content_hash = d.zip_path, d.content_hash
        assert d.num_images == 3 and d.num_tumour == 1
        assert [(it.slice_index, it.label) for it in d.items] == [
            (1, "tumour"),
            (2, "normal"),
            (4, "normal"),
        ]
    assert zip_path == str(settings.datasets_dir.resolve() / "dataset-000001.zip")
    with zipfile.ZipFile(zip_path) as zf:
        infos = zf.infolist()
        names = [i.filename for i in infos]
        assert names == [
            "dataset.json",
            "img00000000.png",
            "img00000001.png",
            "img00000002.png",
            "medsynth.json",
        ]
        assert {i.date_time for i in infos} == {(1980, 1, 1, 0, 0, 0)}
        assert json.loads(zf.read("dataset.json")) == {
            "labels": [["img00000000.png", 1], ["img00000001.png", 0], ["img00000002.png", 0]]
        }
        meta = json.loads(zf.read("medsynth.json"))
        assert _decode(zf.read("img00000001.png")).mode == "L"
    assert meta["dataset_id"] == dataset_id and meta["content_hash"] == content_hash
    assert meta["window"] == {"name": "abdomen", "width": 400.0, "level": 50.0}
    assert (meta["hu_min"], meta["hu_max"]) == (-150.0, 250.0)
    assert meta["pixel_to_hu"] == {"scale": 400.0 / 255, "offset": -150.0}
    assert meta["bit_depth"] == 8 and meta["resolution"] == 64 and meta["mode"] == "window"
    first = meta["images"][0]
    assert first["file"] == "img00000000.png" and first["label"] == 1
    assert (first["volume_id"], first["slice_index"]) == (vol_id, 1)
    assert first["source_sha256"] == vol_sha and first["volume_name"] == "phantom-a"
    assert first["reviewer"] == "reader1" and first["reviewed_at"] and first["review_id"]


def test_export_is_byte_identical_and_the_hash_is_stable(sessions, settings, tmp_path):
    with session_scope(sessions) as s:
        curated(s, settings)
    first = _freeze(sessions, settings, name="first", window="hu", bits=16)
    with session_scope(sessions) as s:
        stored = s.get(DatasetVersion, first)
        frozen_bytes = open(stored.zip_path, "rb").read()
        again = export_zip(s, settings, first, tmp_path / "again.zip", rerender=True)
        copied = export_zip(s, settings, first, tmp_path / "copied.zip")
        hash_first = stored.content_hash
    assert again.read_bytes() == frozen_bytes and copied.read_bytes() == frozen_bytes

    second = _freeze(sessions, settings, name="second name, same slices", window="hu", bits=16)
    with session_scope(sessions) as s:
        d2 = s.get(DatasetVersion, second)
        assert d2.content_hash == hash_first and d2.id != first
        with zipfile.ZipFile(d2.zip_path) as z2, zipfile.ZipFile(again) as z1:
            assert z2.read("img00000002.png") == z1.read("img00000002.png")
            assert _decode(z1.read("img00000000.png")).mode == "I;16"
            meta = json.loads(z1.read("medsynth.json"))
    assert meta["mode"] == "hu" and meta["pixel_to_hu"] == {"scale": 4095 / 65535, "offset": -1024}

    with session_scope(sessions) as s:  # a new decision changes what a freeze takes
        review(s, s.get(DatasetVersion, first).items[0].volume, 0, "reader2", "approved")
    third = _freeze(sessions, settings, name="third", window="hu", bits=16)
    with session_scope(sessions) as s:
        d3 = s.get(DatasetVersion, third)
        assert d3.num_images == 4 and d3.content_hash != hash_first


def test_export_refuses_a_render_that_no_longer_matches_its_hash(sessions, settings, tmp_path):
    with session_scope(sessions) as s:
        curated(s, settings)
    dataset_id = _freeze(sessions, settings)
    with session_scope(sessions) as s:
        s.get(DatasetVersion, dataset_id).content_hash = "0" * 64
    with session_scope(sessions) as s, pytest.raises(Conflict, match="content hash"):
        export_zip(s, settings, dataset_id, tmp_path / "x.zip", rerender=True)
    assert not (tmp_path / "x.zip").exists()


def _with_mask(session, settings, name="masked") -> object:
    """A volume whose mask marks the 90 HU 'liver' of off_centre_body (label 1) plus a
    tumour square (label 2) inside it, cached as ingest would leave it."""
    from tests.app.curation_data import add_volume

    hu = off_centre_body()
    vol = add_volume(session, settings, hu, name)
    labels = np.zeros(hu.shape, np.uint8)
    labels[hu >= 85] = 1
    labels[33:36, 49:52, :] = 2
    path = settings.volumes_dir / f"{name}-mask.npy"
    np.save(path, np.asfortranarray(labels))
    vol.mask_cache_path = str(path)
    session.flush()
    return vol


def _masked_zip(sessions, settings, tmp_path, bits=8):
    from pathlib import Path

    from app.services.curation.export import content_hash, render_images, write_zip

    with session_scope(sessions) as s:
        vol = _with_mask(s, settings)
        for k in (1, 2):
            review(s, vol, k, "reader1", "approved", "tumour" if k == 1 else "normal")
    dataset_id = _freeze(sessions, settings, bits=bits)
    with session_scope(sessions) as s:
        d = s.get(DatasetVersion, dataset_id)
        es = ExportSettings.of(d)
        work = tmp_path / "work"
        work.mkdir()
        images = render_images(s, settings, d.items, es, Path(work), masks=True)
        out = tmp_path / "masked.zip"
        write_zip(out, d, es, images, Path(work))
        return out, content_hash(es, images), d.content_hash


def test_masks_are_stored_beside_images_and_described(sessions, settings, tmp_path):
    out, masked_hash, plain_hash = _masked_zip(sessions, settings, tmp_path)
    assert masked_hash != plain_hash  # the label maps are part of what the hash covers
    with zipfile.ZipFile(out) as zf:
        names = zf.namelist()
        assert names == sorted(names) or names[0] == "dataset.json"
        assert "img00000000.mask.npy" in names and "img00000001.mask.npy" in names
        labels = json.loads(zf.read("dataset.json"))
        meta = json.loads(zf.read("medsynth.json"))
        mask = np.load(io.BytesIO(zf.read("img00000000.mask.npy")))
        image = np.asarray(_decode(zf.read("img00000000.png")))
    assert labels["masks"][0] == ["img00000000.png", "img00000000.mask.npy"]
    assert meta["masks"]["labels"] == {"0": "background", "1": "liver", "2": "tumour"}
    assert meta["images"][0]["mask"]["file"] == "img00000000.mask.npy"
    assert meta["images"][0]["mask"]["tumour_pixels"] > 0
    assert meta["pixel_spacing_mm"] == meta["images"][0]["pixel_spacing_mm"]
    assert mask.dtype == np.uint8 and mask.shape == image.shape == (64, 64)
    assert set(np.unique(mask)) <= {0, 1, 2}
    # aligned: the liver label sits on the bright (90 HU) pixels, not on the 40 HU body
    bright = image > 186  # halfway between the body (40 HU, ~144) and the liver (90 HU, ~229)
    liver = mask > 0
    rows, cols = np.nonzero(liver)  # near the liver: LANCZOS rings at the body's edge
    near = np.zeros_like(liver)
    near[rows.min() - 3 : rows.max() + 4, cols.min() - 3 : cols.max() + 4] = True
    overlap = (bright & liver).sum() / max(((bright & near) | liver).sum(), 1)
    assert overlap > 0.8, overlap


def test_a_volume_without_mask_is_refused_for_a_masked_export(sessions, settings, tmp_path):
    from pathlib import Path

    from app.services.curation.export import render_images

    with session_scope(sessions) as s:
        curated(s, settings)
    dataset_id = _freeze(sessions, settings)
    with session_scope(sessions) as s:
        d = s.get(DatasetVersion, dataset_id)
        with pytest.raises(Conflict, match="has no segmentation mask"):
            render_images(s, settings, d.items, ExportSettings.of(d), Path(tmp_path), masks=True)


def test_the_trainer_reads_the_masks_as_channels(sessions, settings, tmp_path):
    from trainer.dataset import load_dataset

    out, _, _ = _masked_zip(sessions, settings, tmp_path)
    ds = load_dataset(str(out))
    assert ds.num_channels == 3 and ds.label_channels == 2
    x = ds.get_images(__import__("torch").arange(2))
    assert x.shape == (2, 3, 64, 64)
    assert set(x[:, 1:].unique().tolist()) <= {-1.0, 1.0}
    assert (x[0, 2] > 0).any()  # the tumour channel of the tumour slice


def test_a_version_frozen_with_masks_carries_them_and_rerenders_to_its_hash(
    sessions, settings, tmp_path
):
    with session_scope(sessions) as s:
        vol = _with_mask(s, settings)
        review(s, vol, 1, "reader1", "approved", "tumour")
        review(s, vol, 2, "reader1", "approved")
    with session_scope(sessions) as s:
        d = freeze_dataset(s, settings, "masked", 32, "liver", 8, user(s, "admin"), masks=True)
        dataset_id, zip_path = d.id, d.zip_path
    with zipfile.ZipFile(zip_path) as zf:
        assert "img00000001.mask.npy" in zf.namelist()
    with session_scope(sessions) as s:
        again = export_zip(s, settings, dataset_id, tmp_path / "again.zip", rerender=True)
    assert again.read_bytes() == open(zip_path, "rb").read()
