"""The CT phantom: deterministic, plausible HU and anatomy, LiTS labels, non-RAS storage."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

from app.imaging.nifti import load_volume
from app.phantom.volume import make_phantom, write_phantom
from tests.app.nifti_files import small_phantom


def test_same_seed_same_phantom_and_seeds_differ():
    a, b, c = small_phantom(3), small_phantom(3), small_phantom(4)
    assert np.array_equal(a.hu, b.hu) and np.array_equal(a.labels, b.labels)
    assert not np.array_equal(a.hu, c.hu)


def test_types_labels_and_realistic_geometry():
    p = make_phantom(7, size=512, slices=4)
    assert p.hu.dtype == np.int16 and p.labels.dtype == np.uint8
    assert p.hu.shape == p.labels.shape == (512, 512, 4)
    sx, sy, sz = p.spacing
    assert 0.7 <= sx == sy <= 0.8 and 1.0 <= sz <= 5.0
    assert set(np.unique(p.labels)) <= {0, 1, 2}


@pytest.mark.parametrize("tumours", [0, 1, 2, 3])
def test_tumour_count_and_lesions_are_hypodense_inside_the_liver(tumours):
    p = make_phantom(11, size=128, slices=16, tumours=tumours)
    assert p.tumours == tumours
    liver, lesion = p.hu[p.labels == 1], p.hu[p.labels == 2]
    assert 45 < np.median(liver) < 75
    if tumours:
        assert lesion.size and np.median(lesion) < np.median(liver) - 15
    else:
        assert lesion.size == 0


def test_anatomy_air_outside_liver_on_patient_right_in_upper_slices():
    p = make_phantom(2, size=128, slices=20)
    assert np.abs(p.hu[:4, :4, :].astype(float) + 1000).mean() < 20  # air in the corners
    rows_with_liver = np.flatnonzero((p.labels > 0).any(axis=(0, 1)))
    assert rows_with_liver.min() >= 5 and rows_with_liver.max() >= 15  # upper part only
    x = np.nonzero(p.labels > 0)[0]
    assert x.mean() > 64  # RAS x grows to the patient's right
    assert (p.hu > 600).any()  # cortical bone
    assert (p.hu < -800)[20:108, 20:108].any()  # bowel gas or lung inside the body


def test_noise_is_mild_gaussian():
    p = make_phantom(5, size=128, slices=6)
    air = p.hu[:20, :20, :].astype(float)  # outside the body: -1000 HU plus noise only
    assert abs(air.mean() + 1000) < 3 and 9 < air.std() < 15


def test_written_files_are_lps_int16_and_read_back_ras(tmp_path):
    p = small_phantom(1)
    write_phantom(p, tmp_path / "v.nii.gz", tmp_path / "m.nii.gz")
    img = nib.load(tmp_path / "v.nii.gz")
    assert nib.aff2axcodes(img.affine) == ("L", "P", "S")
    assert img.get_data_dtype() == np.int16 and int(img.header["qform_code"]) == 1
    assert np.array_equal(load_volume(tmp_path / "v.nii.gz").array, p.hu)
    assert np.array_equal(load_volume(tmp_path / "m.nii.gz", mask=True).array, p.labels)
