"""DICOM ingest: series assembly, geometry equal to NIfTI, refusals with file and reason, masks."""

from __future__ import annotations

import dataclasses

import nibabel as nib
import numpy as np
import pydicom
import pytest
from pydicom.uid import JPEG2000Lossless, RLELossless, generate_uid

from app.db import make_engine, make_sessionmaker
from app.errors import Conflict, InvalidInput, InvalidVolume, PayloadTooLarge
from app.migrate import upgrade
from app.models import Volume
from app.services.curation.ingest import ingest_file, ingest_paths
from app.services.curation.ingest_dicom import ingest_dicom
from app.services.curation.volumes import display_slice, mask_array, volume_array
from app.settings import Settings
from tests.app.dicom_files import (
    ct_volume,
    expected_ras,
    write_enhanced,
    write_localizer,
    write_seg,
    write_series,
    zip_folder,
)
from tests.app.test_ingest import assert_nothing_left


def _one(settings, db, source, mask=None):
    with db() as session:
        done = ingest_dicom(session, settings, source, mask)
        assert len(done.volumes) == 1, done.skipped
        volume = done.volumes[0]
        return volume, volume_array(settings, volume), done.skipped


def test_shuffled_names_and_rescale_give_hu_in_ras_order(settings, db, tmp_path):
    hu = ct_volume(n=7)
    write_series(tmp_path / "s", hu, slope=0.5, intercept=-1000.0, seed=3)
    volume, arr, _ = _one(settings, db, tmp_path / "s")
    assert np.array_equal(arr, expected_ras(hu)) and arr.flags.f_contiguous
    assert volume.shape == [40, 32, 7] and volume.spacing == [0.75, 0.8, 2.5]
    assert volume.source_format == "dicom" and volume.dicom_origin == [-15.0, -12.0, -40.0]
    assert (volume.hu_min, volume.hu_max) == (float(hu.min()), float(hu.max()))


def test_canonical_volume_equals_the_same_data_as_nifti(settings, db, tmp_path):
    hu = ct_volume(n=5)
    write_series(tmp_path / "s", hu, spacing=(0.7, 0.9, 3.0), origin=(10.0, -20.0, 5.0))
    raw = np.transpose(hu, (1, 0, 2))  # [column, row, slice], as DICOM-to-NIfTI tools write it
    affine = np.array([[-0.7, 0, 0, -10.0], [0, -0.9, 0, 20.0], [0, 0, 3.0, 5.0], [0, 0, 0, 1]])
    same = tmp_path / "same.nii.gz"
    nib.save(nib.Nifti1Image(raw, affine), same)
    dicom, arr, _ = _one(settings, db, tmp_path / "s")
    for k in range(5):  # radiological display = the DICOM image as a PACS shows it
        assert np.array_equal(display_slice(settings, dicom, k), hu[:, :, k])
    with db() as session, pytest.raises(Conflict, match=f"as volume {dicom.id} "):
        ingest_file(session, settings, same)  # recognised: same voxels on the same grid
    other = Settings(
        data_dir=tmp_path / "o", database_url=f"sqlite:///{tmp_path}/o.db", secret_key="x"
    )
    other.ensure_dirs()
    upgrade(other.database_url)
    engine = make_engine(other.database_url)
    with make_sessionmaker(engine)() as session:
        nifti = ingest_file(session, other, same)
        assert (nifti.shape, nifti.spacing) == (dicom.shape, dicom.spacing)
        assert np.allclose(nifti.affine, dicom.affine, atol=1e-5)  # NIfTI stores float32
        assert np.array_equal(volume_array(other, nifti), arr)
        assert nifti.content_sha256 == dicom.content_sha256
    engine.dispose()


@pytest.mark.parametrize("syntax", [RLELossless, JPEG2000Lossless], ids=["rle", "jpeg2000"])
def test_compressed_transfer_syntax_decodes(settings, db, tmp_path, syntax):
    hu = ct_volume(n=3)
    write_series(tmp_path / "s", hu, syntax=syntax)
    _, arr, _ = _one(settings, db, tmp_path / "s")
    assert np.array_equal(arr, expected_ras(hu))


def test_enhanced_multiframe_ct_is_one_volume(settings, db, tmp_path):
    hu = (ct_volume(n=4) // 2) * 2  # even HU: stored = (HU + 1024) / 2 exactly
    (tmp_path / "e").mkdir()
    write_enhanced(tmp_path / "e" / "enhanced.dcm", hu, slopes=(2.0, -1024.0))
    volume, arr, _ = _one(settings, db, tmp_path / "e")
    assert volume.source_format == "dicom-enhanced"
    assert np.array_equal(arr, expected_ras(hu))


def test_two_series_localizer_and_other_files_in_one_zip(settings, db, tmp_path):
    study = generate_uid()
    write_series(tmp_path / "in" / "ct1", ct_volume(seed=1), study_uid=study)
    write_series(tmp_path / "in" / "ct2", ct_volume(n=4, seed=2), study_uid=study)
    write_localizer(tmp_path / "in" / "ct1")
    extra = {"README.txt": b"export notes", "DICOMDIR.xml": b"<x/>"}
    zipped = zip_folder(tmp_path / "in", tmp_path / "study.zip", extra)
    with db() as session:
        done = ingest_dicom(session, settings, zipped, name="study.zip")
        assert sorted(v.num_slices for v in done.volumes) == [4, 6]
        assert len({v.study_key for v in done.volumes}) == 1
        assert len({v.series_key for v in done.volumes}) == 2
        assert done.non_dicom == 2
        reasons = {s["file"]: s["reason"] for s in done.skipped}
        assert reasons["ct1/SCOUT1"] == "localizer/scout image"
        assert reasons["README.txt"] == "not a DICOM file"
    assert not any(settings.tmp_dir.iterdir())


def _refusal(settings, db, folder) -> str:
    with db() as session:
        with pytest.raises(InvalidVolume) as err:
            ingest_dicom(session, settings, folder)
        assert_nothing_left(settings, session)
    return err.value.detail


def test_missing_slice_is_refused_naming_the_files(settings, db, tmp_path):
    paths = write_series(tmp_path / "s", ct_volume(n=8), skip=(4,))
    detail = _refusal(settings, db, tmp_path / "s")
    assert "missing slice between" in detail and "a gap of 5.00 mm" in detail
    assert sum(p.name in detail for p in paths) == 2


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"orientation": (0, 1, 0, 0, 0, -1)}, "a sagittal series, not axial"),
        ({"modality": "MR"}, "modality MR, not CT"),
        ({"spacing": (0.75, 0.8, 0.0)}, "duplicate slice position"),
    ],
    ids=["sagittal", "mr", "duplicates"],
)
def test_unusable_series_are_refused_with_the_reason(settings, db, tmp_path, kwargs, words):
    write_series(tmp_path / "s", ct_volume(n=4), **kwargs)
    assert words in _refusal(settings, db, tmp_path / "s")


def test_gantry_tilt_single_slice_and_mixed_pixel_size_are_refused(settings, db, tmp_path):
    hu = ct_volume(n=4)
    uid = generate_uid()
    write_series(tmp_path / "tilt", hu, orientation=(1, 0, 0, 0, 0.966, -0.259), series_uid=uid)
    for p in (tmp_path / "tilt").iterdir():  # positions stepped along z, not the tilted normal
        ds = pydicom.dcmread(p)
        k = round((ds.ImagePositionPatient[2] + 40) / (2.5 * 0.966))
        ds.ImagePositionPatient = [-15.0, -12.0, -40.0 + 2.5 * k]
        ds.save_as(p)
    assert "gantry tilt of 15.0°" in _refusal(settings, db, tmp_path / "tilt")
    write_series(tmp_path / "one", ct_volume(n=1))
    assert "single-slice series" in _refusal(settings, db, tmp_path / "one")
    uid = generate_uid()
    write_series(tmp_path / "mix" / "a", hu, series_uid=uid)
    write_series(
        tmp_path / "mix" / "b", hu, series_uid=uid, spacing=(0.5, 0.5, 2.5), origin=(0, 0, 9)
    )
    assert "pixel size [0.5, 0.5] differs" in _refusal(settings, db, tmp_path / "mix")
    uid = generate_uid()
    write_series(tmp_path / "turn" / "a", hu, series_uid=uid)
    write_series(tmp_path / "turn" / "b", hu, series_uid=uid, orientation=(0, 1, 0, -1, 0, 0))
    assert "orientation differs from" in _refusal(settings, db, tmp_path / "turn")


def test_unreadable_pixel_data_names_the_file(settings, db, tmp_path):
    paths = write_series(tmp_path / "s", ct_volume(n=4))
    ds = pydicom.dcmread(paths[1])
    ds.PixelData = ds.PixelData[:-64]  # shorter than Rows × Columns × 2
    ds.save_as(paths[1])
    detail = _refusal(settings, db, tmp_path / "s")
    assert f"{paths[1].name}: unreadable pixel data" in detail
    paths = write_series(tmp_path / "c", ct_volume(n=4), syntax=RLELossless)
    paths[2].write_bytes(paths[2].read_bytes()[:-300])  # a cut-off compressed file
    detail = _refusal(settings, db, tmp_path / "c")
    assert f"{paths[2].name}: " in detail and "pixel data" in detail


def test_bad_series_is_skipped_when_another_is_usable(settings, db, tmp_path):
    write_series(tmp_path / "in" / "good", ct_volume())
    write_series(tmp_path / "in" / "gap", ct_volume(n=6), skip=(2,))
    with db() as session:
        (line, skipped) = ingest_paths(session, settings, [tmp_path / "in"])
    assert line["num_slices"] == 6 and "missing slice" in skipped["reason"]


def test_re_upload_is_a_conflict_naming_the_volume(settings, db, tmp_path):
    write_series(tmp_path / "s", ct_volume())
    zipped = zip_folder(tmp_path / "s", tmp_path / "s.zip")
    first, _, _ = _one(settings, db, tmp_path / "s")
    with db() as session, pytest.raises(Conflict, match=f"volume {first.id} 'dicom-"):
        ingest_dicom(session, settings, zipped)
    with db() as session:
        assert session.query(Volume).count() == 1


def test_zip_with_dotdot_member_or_too_big_is_refused_before_extraction(settings, db, tmp_path):
    write_series(tmp_path / "s", ct_volume(n=3))
    evil = zip_folder(tmp_path / "s", tmp_path / "hostile.zip", {"../../escape.dcm": b"x" * 200})
    with db() as session, pytest.raises(InvalidInput, match="member 4 is a '..' path"):
        ingest_dicom(session, settings, evil)
    bomb = zip_folder(tmp_path / "s", tmp_path / "bomb.zip", {"zeros.bin": bytes(4 * 1024**2)})
    small = dataclasses.replace(settings, max_decompressed_bytes=2 * 1024**2)
    with db() as session, pytest.raises(PayloadTooLarge, match="MEDSYNTH_MAX_DECOMPRESSED"):
        ingest_dicom(session, small, bomb)
    assert bomb.stat().st_size < 100_000 and not (tmp_path / "escape.dcm").exists()
    assert not any(settings.tmp_dir.iterdir())


def _labels(hu: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    liver = np.zeros(hu.shape, np.int16)
    liver[10:25, 10:30, 1:5] = 1
    tumour = np.zeros(hu.shape, np.int16)
    tumour[14:18, 15:20, 2:4] = 255
    return liver, tumour


def test_mask_as_structure_folders_becomes_labels_1_and_2(settings, db, tmp_path):
    hu = ct_volume()
    liver, tumour = _labels(hu)
    write_series(tmp_path / "ct", hu)
    for name, data in (("liver", liver), ("livertumor", tumour), ("bone", liver)):
        write_series(tmp_path / "m" / name, data, intercept=0.0)
    masks = zip_folder(tmp_path / "m", tmp_path / "masks.zip")
    with db() as session:
        done = ingest_dicom(session, settings, tmp_path / "ct", masks)
        labels = mask_array(settings, done.volumes[0])
    want = np.where(tumour > 0, 2, np.where(liver > 0, 1, 0)).astype(np.uint8)
    assert np.array_equal(labels, expected_ras(want))
    assert {"file": "bone", "reason": "not a liver or tumour mask"} in done.skipped


def test_nifti_mask_on_a_dicom_volume_and_a_wrong_grid(settings, db, tmp_path):
    hu = ct_volume()
    write_series(tmp_path / "ct", hu)
    liver, tumour = _labels(hu)
    want = np.where(tumour > 0, 2, liver).astype(np.uint8)
    affine = np.array([[-0.75, 0, 0, 15.0], [0, -0.8, 0, 12.0], [0, 0, 2.5, -40.0], [0, 0, 0, 1]])
    nib.save(nib.Nifti1Image(np.transpose(want, (1, 0, 2)), affine), tmp_path / "seg.nii.gz")
    nib.save(nib.Nifti1Image(np.transpose(want, (1, 0, 2)), np.eye(4)), tmp_path / "bad.nii.gz")
    with db() as session:
        with pytest.raises(InvalidInput, match="does not match volume"):
            ingest_dicom(session, settings, tmp_path / "ct", tmp_path / "bad.nii.gz")
        done = ingest_dicom(session, settings, tmp_path / "ct", tmp_path / "seg.nii.gz")
        assert np.array_equal(mask_array(settings, done.volumes[0]), expected_ras(want))


def test_dicom_seg_mask_lands_on_the_ct_grid(settings, db, tmp_path):
    hu = ct_volume()
    paths = write_series(tmp_path / "ct", hu)
    liver, tumour = _labels(hu)
    seg = write_seg(tmp_path / "seg.dcm", paths, liver, tumour)
    with db() as session:
        done = ingest_dicom(
            session, settings, zip_folder(tmp_path / "ct", tmp_path / "ct.zip"), seg
        )
        volume = done.volumes[0]
        labels = mask_array(settings, volume)
        assert volume.has_mask and [s.tumour_pixels > 0 for s in volume.slices].count(True) == 2
    want = np.where(tumour > 0, 2, np.where(liver > 0, 1, 0)).astype(np.uint8)
    assert np.array_equal(labels, expected_ras(want))


def test_cli_ingest_prints_one_json_line_per_volume(settings, tmp_path, monkeypatch, capsys):
    import json

    from app.__main__ import main

    write_series(tmp_path / "in" / "a", ct_volume(seed=1))
    write_series(tmp_path / "in" / "b", ct_volume(n=4, seed=2))
    zipped = zip_folder(tmp_path / "in", tmp_path / "two.zip", {"notes.txt": b"x"})
    monkeypatch.setenv("MEDSYNTH_DATA", str(settings.data_dir))
    monkeypatch.setenv("MEDSYNTH_SECRET_KEY", "k")
    assert main(["ingest", str(zipped)]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert sorted(x["num_slices"] for x in lines if "id" in x) == [4, 6]
    assert [x["reason"] for x in lines if "skipped" in x] == ["not a DICOM file"]
