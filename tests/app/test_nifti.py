"""Reading NIfTI: reorientation to RAS, radiological display, scaling, and every broken file."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

from app.errors import InvalidInput, InvalidVolume
from app.imaging.nifti import check_same_grid, load_volume, open_nifti
from app.imaging.render import axial_display
from tests.app.nifti_files import (
    corrupt_gzip,
    gzip_bytes,
    reoriented,
    save,
    save_scaled,
    truncated_gzip,
)

RAS_AFFINE = np.array(
    [[0.8, 0, 0, -20.0], [0, 0.7, 0, -30.0], [0, 0, 2.5, -100.0], [0, 0, 0, 1]], dtype=float
)


def marked_ras() -> np.ndarray:
    """An asymmetric [x, y, z] volume: every voxel different, corners easy to name."""
    return np.arange(6 * 5 * 4, dtype=np.int16).reshape(6, 5, 4) * 3 - 100


@pytest.mark.parametrize(
    "codes", [("L", "P", "S"), ("R", "A", "I"), ("P", "S", "L"), ("S", "L", "A")]
)
@pytest.mark.parametrize("suffix", [".nii", ".nii.gz"])
def test_any_storage_orientation_comes_out_ras(tmp_path, codes, suffix):
    ras = marked_ras()
    data, affine = reoriented(ras, RAS_AFFINE, codes)
    path = save(tmp_path / f"v{suffix}", data, affine)
    assert nib.aff2axcodes(nib.load(path).affine) == codes
    loaded = load_volume(path)
    assert loaded.array.dtype == np.int16 and loaded.array.shape == ras.shape
    assert np.array_equal(loaded.array, ras)
    assert np.allclose(loaded.affine, RAS_AFFINE)
    assert loaded.spacing == (0.8, 0.7, 2.5)


def test_radiological_display_puts_patient_right_left_and_anterior_up():
    ras = np.zeros((6, 5, 2), np.int16)
    ras[5, 2, 0] = 1  # far patient right (largest x)
    ras[2, 4, 0] = 2  # most anterior (largest y)
    view = axial_display(ras, 0)  # [rows, cols]
    assert view.shape == (5, 6)
    assert view[2, 0] == 1  # on the viewer's left
    assert view[0, 3] == 2  # at the top


def test_scl_slope_and_inter_are_applied(tmp_path):
    raw = np.array([0, 1000, 1024, 4095, 65535], dtype=np.uint16).reshape(5, 1, 1)
    raw = np.repeat(np.repeat(raw, 2, 1), 3, 2)
    loaded = load_volume(save_scaled(tmp_path / "u16.nii", raw, 1.0, -1024.0))
    assert loaded.array[:, 0, 0].tolist() == [-1024, -24, 0, 3071, 32767]  # clipped to int16
    halves = load_volume(save_scaled(tmp_path / "half.nii", raw, 0.5, -10.0))
    assert halves.array[:, 0, 0].tolist() == [-10, 490, 502, 2038, 32758]


def test_float_data_is_rounded_and_nan_becomes_air(tmp_path):
    data = np.array([-1000.4, 39.6, np.nan, 1e9], dtype=np.float32).reshape(4, 1, 1)
    loaded = load_volume(save(tmp_path / "f.nii.gz", np.repeat(data, 2, 2)))
    assert loaded.array[:, 0, 0].tolist() == [-1000, 40, -1024, 32767]


def test_4d_with_one_volume_is_squeezed(tmp_path):
    data = marked_ras()[..., None]
    assert load_volume(save(tmp_path / "t1.nii.gz", data)).array.shape == (6, 5, 4)


def _bad(tmp_path, make) -> str:
    with pytest.raises(InvalidVolume) as err:
        load_volume(make(tmp_path))
    assert err.value.status_code == 422
    assert not list(tmp_path.glob("**/tmp*.nii"))  # scratch copies are gone
    return err.value.detail


def test_truncated_gzip_is_rejected(tmp_path):
    good = save(
        tmp_path / "good.nii.gz",
        np.random.default_rng(0).integers(-1000, 1000, (40, 40, 20), dtype=np.int16),
    )
    detail = _bad(tmp_path, lambda d: truncated_gzip(good, d / "cut.nii.gz"))
    assert "cut.nii.gz" in detail and "truncated" in detail


def test_corrupt_gzip_is_rejected(tmp_path):
    good = save(
        tmp_path / "good.nii.gz",
        np.random.default_rng(0).integers(-1000, 1000, (40, 40, 20), dtype=np.int16),
    )
    detail = _bad(tmp_path, lambda d: corrupt_gzip(good, d / "bad.nii.gz"))
    assert "corrupt" in detail or "checksum" in detail


def test_gz_name_on_plain_data_is_rejected(tmp_path):
    detail = _bad(
        tmp_path, lambda d: save(d / "x.nii", marked_ras()).rename(d / "x.nii.gz") or d / "x.nii.gz"
    )
    assert "not a gzip file" in detail


@pytest.mark.parametrize("suffix", [".nii", ".nii.gz"])
def test_non_nifti_file_with_a_nii_name_is_rejected(tmp_path, suffix):
    text = b"patient,hu\n1,40\n" * 50

    def make(d):
        if suffix == ".nii":
            (d / "notes.nii").write_bytes(text)
            return d / "notes.nii"
        return gzip_bytes(text, d / "notes.nii.gz")

    assert "is not a NIfTI file" in _bad(tmp_path, make)


def test_empty_file_is_rejected(tmp_path):
    def make(d):
        (d / "empty.nii").write_bytes(b"")
        return d / "empty.nii"

    assert "empty file" in _bad(tmp_path, make)


@pytest.mark.parametrize(
    "shape, words",
    [
        ((16, 16), "2D image (16×16)"),
        ((4, 4, 4, 1, 2), "5D image"),
        ((4, 4, 4, 3), "3 volumes along the 4th axis"),
    ],
)
def test_wrong_dimensions_are_rejected(tmp_path, shape, words):
    detail = _bad(tmp_path, lambda d: save(d / "dims.nii.gz", np.zeros(shape, np.int16)))
    assert words in detail


def test_truncated_uncompressed_nii_is_rejected(tmp_path):
    def make(d):
        path = save(d / "short.nii", np.zeros((32, 32, 8), np.int16))
        path.write_bytes(path.read_bytes()[:5000])
        return path

    assert "truncated" in _bad(tmp_path, make)


def test_mask_values_outside_lits_labels_are_rejected(tmp_path):
    labels = np.zeros((6, 5, 4), np.uint8)
    labels[1, 1, 1], labels[2, 2, 2] = 5, 2
    with pytest.raises(InvalidInput) as err:
        load_volume(save(tmp_path / "m.nii.gz", labels), mask=True)
    assert "values other than 0, 1, 2 (found 5)" in err.value.detail


def test_mask_on_another_grid_is_rejected_with_both_geometries(tmp_path):
    vol = save(tmp_path / "v.nii.gz", marked_ras(), RAS_AFFINE)
    shifted = RAS_AFFINE.copy()
    shifted[0, 3] += 5
    for name, data, affine, words in [
        ("shape", np.zeros((6, 5, 3), np.uint8), RAS_AFFINE, "shape [6, 5, 3]"),
        ("affine", np.zeros((6, 5, 4), np.uint8), shifted, "-15.000"),
    ]:
        mask = save(tmp_path / f"{name}.nii.gz", data, affine)
        with open_nifti(vol, tmp_path) as v, open_nifti(mask, tmp_path) as m:
            with pytest.raises(InvalidInput) as err:
                check_same_grid(v, m)
        assert words in err.value.detail and "shape [6, 5, 4]" in err.value.detail


def test_mask_stored_in_another_voxel_order_still_matches(tmp_path):
    vol = save(tmp_path / "v.nii.gz", marked_ras(), RAS_AFFINE)
    labels_ras = (marked_ras() % 3).astype(np.uint8)  # asymmetric 0/1/2 labels
    data, affine = reoriented(labels_ras, RAS_AFFINE, ("L", "P", "S"))
    mask = save(tmp_path / "m.nii.gz", data, affine)
    with open_nifti(vol, tmp_path) as v, open_nifti(mask, tmp_path) as m:
        check_same_grid(v, m)
    loaded = load_volume(mask, mask=True)
    assert np.array_equal(loaded.array, labels_ras)  # reoriented back, voxel for voxel
