"""Decompression limits: sizes and ratios are judged from headers and directories, before data.

Every test runs with the default MEDSYNTH_MAX_DECOMPRESSED_BYTES (the conftest settings leave
it alone), so the defaults themselves are what is tested.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import nibabel as nib
import numpy as np

from app.settings import Settings, load_settings
from tests.app.dicom_files import ct_volume, write_series, zip_folder
from tests.app.nifti_files import phantom_pair
from tests.app.test_volumes_api import assert_nothing_left, upload


def _declaring(path: Path, shape: tuple[int, int, int], data: bytes) -> Path:
    """A .nii.gz whose header declares int16 `shape` but whose stream holds `data` after it."""
    header = nib.Nifti1Header()
    header.set_data_shape(shape)
    header.set_data_dtype(np.int16)
    header.set_sform(np.diag([0.8, 0.8, 2.5, 1.0]), code=1)
    header["vox_offset"] = 352
    head = header.binaryblock + b"\0" * 4
    path.write_bytes(gzip.compress(head + data))
    return path


def test_default_limits_fit_a_real_ct_series_and_no_more():
    s = load_settings({"MEDSYNTH_DATA": "/nonexistent", "MEDSYNTH_SECRET_KEY": "k"})
    ct_series = 512 * 512 * 1000 * 2  # int16
    assert ct_series < s.max_decompressed_bytes <= 4 * ct_series
    assert s.max_upload_bytes <= 4 * ct_series
    assert Settings(data_dir=Path("."), database_url="", secret_key="k").max_decompressed_bytes == (
        s.max_decompressed_bytes
    )


def test_a_small_nii_gz_declaring_a_huge_volume_is_refused_from_its_header(
    live_app, admin, tmp_path
):
    bomb = _declaring(tmp_path / "huge.nii.gz", (512, 512, 2500), bytes(4 * 1024**2))
    assert bomb.stat().st_size < 50_000  # 1.2 GiB declared, a few kB sent
    r = upload(admin, bomb)
    assert r.status_code == 413, r.text
    detail = r.json()["detail"]
    assert "decompresses to 1,310,720,352 bytes" in detail  # 352 + 512×512×2500×2, the header's
    assert "MEDSYNTH_MAX_DECOMPRESSED_BYTES" in detail
    assert_nothing_left(live_app)


def test_a_stream_longer_than_its_header_is_stopped(live_app, admin, tmp_path):
    voxels = np.zeros((64, 64, 12), np.int16).tobytes(order="F")
    longer = _declaring(tmp_path / "longer.nii.gz", (64, 64, 12), voxels + bytes(16 * 1024**2))
    r = upload(admin, longer)
    assert r.status_code == 422, r.text
    assert "decompresses to more than its header says" in r.json()["detail"]
    assert_nothing_left(live_app)


def test_a_zip_bomb_is_refused_from_its_directory(live_app, admin, tmp_path):
    write_series(tmp_path / "s", ct_volume(n=3))
    zeros = bytes(100 * 1024**2)  # 100 MiB that deflate to about 100 kB
    bomb = zip_folder(tmp_path / "s", tmp_path / "bomb.zip", {"IM9999": zeros})
    assert bomb.stat().st_size < 1024**2
    r = admin.post("/api/volumes", files={"file": ("b.zip", bomb.read_bytes(), "application/zip")})
    assert r.status_code == 413, r.text
    assert "zip bomb" in r.json()["detail"] and "-fold" in r.json()["detail"]
    assert_nothing_left(live_app)


def test_an_ordinary_zip_and_volume_still_pass(live_app, admin, tmp_path):
    write_series(tmp_path / "s", ct_volume(n=4))
    zipped = zip_folder(tmp_path / "s", tmp_path / "ok.zip")
    r = admin.post(
        "/api/volumes", files={"file": ("ok.zip", zipped.read_bytes(), "application/zip")}
    )
    assert r.status_code == 201, r.text
    _, volume, mask = phantom_pair(tmp_path)
    assert upload(admin, volume, mask).status_code == 201
