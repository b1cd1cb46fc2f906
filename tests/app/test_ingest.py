"""Ingest: LiTS pairing, the RAS cache, slice counts, and all-or-nothing failure."""

from __future__ import annotations

import errno
import hashlib
import shutil

import numpy as np
import pytest
from sqlalchemy import func, select

from app.errors import Conflict, InsufficientStorage, InvalidInput, InvalidVolume, PayloadTooLarge
from app.models import SliceInfo, Volume
from app.services.curation import volume_cache
from app.services.curation.demo import create_demo
from app.services.curation.ingest import ingest_file, ingest_paths
from app.services.curation.volumes import mask_array, suggestions, volume_array
from tests.app.nifti_files import phantom_pair, save, truncated_gzip


def assert_nothing_left(settings, session):
    assert session.scalar(select(func.count()).select_from(Volume)) == 0
    assert session.scalar(select(func.count()).select_from(SliceInfo)) == 0
    for folder in (settings.uploads_dir, settings.volumes_dir, settings.tmp_dir):
        assert list(folder.iterdir()) == [], folder


def test_lits_pair_in_a_folder_is_paired_cached_and_counted(settings, db, tmp_path):
    phantom, vol_path, mask_path = phantom_pair(tmp_path, n=7, seed=3, tumours=2)
    before = hashlib.sha256(vol_path.read_bytes()).hexdigest()
    with db() as session:
        (result,) = ingest_paths(session, settings, [tmp_path])
        volume = session.get(Volume, result["id"])
        assert (
            result["name"] == "volume-7" and result["has_mask"] and result["shape"] == [64, 64, 12]
        )
        assert volume.source_sha256 == before == hashlib.sha256(vol_path.read_bytes()).hexdigest()
        assert (settings.data_dir / volume.source_path).is_relative_to(settings.uploads_dir)
        hu, labels = volume_array(settings, volume), mask_array(settings, volume)
        assert np.array_equal(hu, phantom.hu) and np.array_equal(labels, phantom.labels)
        assert hu.flags.f_contiguous and hu[:, :, 5].flags.f_contiguous  # slices are contiguous
        assert volume_array(settings, volume) is hu  # opened once, kept
        assert (volume.hu_min, volume.hu_max) == (phantom.hu.min(), phantom.hu.max())
        liver = (phantom.labels > 0).sum(axis=(0, 1))
        tumour = (phantom.labels == 2).sum(axis=(0, 1))
        assert [s.liver_pixels for s in volume.slices] == liver.tolist()
        assert [s.tumour_pixels for s in volume.slices] == tumour.tolist()
        assert suggestions(volume) == np.flatnonzero(liver).tolist()
    assert list(settings.tmp_dir.iterdir()) == []


def test_explicit_mask_and_plain_volume(settings, db, tmp_path):
    _, vol_path, mask_path = phantom_pair(tmp_path)
    plain = vol_path.rename(tmp_path / "abdomen ct.nii.gz")
    other = phantom_pair(tmp_path / "b", n=4, seed=9)[1].rename(tmp_path / "other ct.nii.gz")
    with db() as session:
        (with_mask,) = ingest_paths(session, settings, [plain], mask=mask_path)
        (without,) = ingest_paths(session, settings, [other])
        assert with_mask["has_mask"] and with_mask["liver_slices"] > 0
        assert not without["has_mask"] and without["name"] == "other ct"
        assert session.get(Volume, without["id"]).source_path.endswith("other_ct.nii.gz")


def test_the_same_volume_again_is_a_conflict_naming_the_first(settings, db, tmp_path):
    phantom, vol_path, _ = phantom_pair(tmp_path)
    repacked = save(tmp_path / "renamed.nii", phantom.hu, phantom.affine)  # other bytes, same data
    with db() as session:
        first = ingest_file(session, settings, vol_path)
        for again in (vol_path, repacked):
            with pytest.raises(Conflict, match=f"already ingested as volume {first.id} ") as err:
                ingest_file(session, settings, again)
            assert err.value.status_code == 409
        assert session.scalar(select(func.count()).select_from(Volume)) == 1
        assert len(list(settings.volumes_dir.iterdir())) == 1 and not any(
            settings.tmp_dir.iterdir()
        )


def test_a_segmentation_sent_as_the_ct_is_refused(settings, db, tmp_path):
    _, _, mask_path = phantom_pair(tmp_path)
    with db() as session:
        with pytest.raises(InvalidVolume, match="only the values 0…2: this is a segmentation"):
            ingest_file(session, settings, mask_path, original_name="volume-3.nii.gz")
        assert_nothing_left(settings, session)


def test_a_gzip_bomb_is_refused_before_it_is_unpacked(settings, db, tmp_path):
    import dataclasses

    big = save(tmp_path / "bomb.nii.gz", np.zeros((256, 256, 64), np.int16))  # 8 MiB of zeros
    small = dataclasses.replace(settings, max_decompressed_bytes=1024**2)
    with db() as session:
        with pytest.raises(PayloadTooLarge, match="decompresses to 8,388,") as err:
            ingest_file(session, small, big)
        assert err.value.status_code == 413 and big.stat().st_size < 100_000
        assert_nothing_left(small, session)


def test_explicit_mask_needs_exactly_one_volume(settings, db, tmp_path):
    phantom_pair(tmp_path, n=1)
    phantom_pair(tmp_path, n=2)
    with db() as session, pytest.raises(InvalidInput, match="exactly one volume, got 2"):
        ingest_paths(session, settings, [tmp_path], mask=tmp_path / "segmentation-1.nii.gz")


def test_a_bad_file_is_reported_and_the_others_continue(settings, db, tmp_path):
    phantom_pair(tmp_path, n=1)
    truncated_gzip(tmp_path / "volume-1.nii.gz", tmp_path / "volume-2.nii.gz")
    shutil.copy(tmp_path / "segmentation-1.nii.gz", tmp_path / "segmentation-9.nii.gz")
    with db() as session:
        results = ingest_paths(session, settings, [tmp_path, tmp_path / "missing.nii"])
    by_path = {r["path"].rsplit("/", 1)[-1]: r for r in results}
    assert by_path["missing.nii"]["error"] == "no such file or folder"
    assert "truncated" in by_path["volume-2.nii.gz"]["error"]
    assert by_path["segmentation-9.nii.gz"]["error"].startswith("segmentation without")
    assert by_path["volume-1.nii.gz"]["has_mask"] and "error" not in by_path["volume-1.nii.gz"]
    assert len(list(settings.volumes_dir.iterdir())) == 2  # volume-1 and its mask only
    assert list(settings.tmp_dir.iterdir()) == []


@pytest.mark.parametrize("what", ["shape", "affine"])
def test_mismatched_mask_leaves_nothing_behind(settings, db, tmp_path, what):
    phantom, vol_path, _ = phantom_pair(tmp_path)
    affine = np.diag([5.0, 5.0, 5.0, 1.0]) if what == "affine" else None
    shape = (64, 64, 11) if what == "shape" else (64, 64, 12)
    mask = save(tmp_path / "other.nii.gz", np.zeros(shape, np.uint8), affine)
    with db() as session:
        with pytest.raises(InvalidInput, match="does not match volume"):
            ingest_file(session, settings, vol_path, mask)
        assert_nothing_left(settings, session)
    assert vol_path.exists() and mask.exists()  # the user's files are untouched


def test_corrupt_volume_leaves_nothing_behind(settings, db, tmp_path):
    _, vol_path, mask_path = phantom_pair(tmp_path)
    cut = truncated_gzip(vol_path, tmp_path / "cut.nii.gz")
    with db() as session:
        with pytest.raises(InvalidVolume, match="gzip stream truncated"):
            ingest_file(session, settings, cut, mask_path)
        assert_nothing_left(settings, session)


def test_full_disk_is_insufficient_storage_and_leaves_nothing(settings, db, tmp_path, monkeypatch):
    _, vol_path, mask_path = phantom_pair(tmp_path)
    real_write = volume_cache.write_npy

    def write_then_fail(path, dtype, shape, slabs):
        if dtype == np.uint8:  # the volume cache is already in place; the mask hits a full disk
            raise OSError(errno.ENOSPC, "No space left on device")
        real_write(path, dtype, shape, slabs)

    monkeypatch.setattr(volume_cache, "write_npy", write_then_fail)
    with db() as session:
        with pytest.raises(InsufficientStorage, match="not enough disk space") as err:
            ingest_file(session, settings, vol_path, mask_path)
        assert err.value.status_code == 507
        assert_nothing_left(settings, session)


def test_wrong_suffix_and_missing_file_are_rejected_early(settings, db, tmp_path):
    (tmp_path / "scan.dcm").write_bytes(b"DICM")
    with db() as session:
        with pytest.raises(InvalidVolume, match="only .nii and .nii.gz"):
            ingest_file(session, settings, tmp_path / "scan.dcm")
        with pytest.raises(InvalidInput, match="no such file"):
            ingest_file(session, settings, tmp_path / "gone.nii.gz")
        assert_nothing_left(settings, session)


def test_demo_is_deterministic_varied_and_idempotent(settings, db):
    with db() as session:
        first = create_demo(session, settings, volumes=3, seed=0, size=64)
        again = create_demo(session, settings, volumes=3, seed=0, size=64)
        assert [v.id for v in again] == [v.id for v in first]
        tumour_slices = [sum(s.tumour_pixels > 0 for s in v.slices) for v in first]
        assert tumour_slices[1] == 0 and tumour_slices[0] > 0 and tumour_slices[2] > 0
        assert len({v.source_sha256 for v in first}) == 3
        folder = settings.uploads_dir / "demo"
        assert sorted(p.name for p in folder.iterdir()) == sorted(
            f"phantom-0-{i}-64{s}.nii.gz" for i in range(3) for s in ("", ".seg")
        )
