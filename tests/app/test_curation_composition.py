"""Dataset composition over HTTP: chosen volumes and filters, counts before freezing,
patient-level splits, the held-out check, archive and delete."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from sqlalchemy import func, select

from app.db import session_scope
from app.errors import Conflict
from app.models import DatasetVersion, Review, Volume, VolumeAssignment
from app.services.curation.composition import Split, VolumeCount, split_volumes
from app.services.curation.datasets import check_disjoint, heldout_candidates
from app.services.curation.demo import create_demo
from tests.app.curation_data import add_volume, off_centre_body, review, user

READERS = ("reader1", "reader2")
FREEZE = {"name": "liver-32", "resolution": 32, "window": "liver", "bit_depth": 8}


@pytest.fixture
def five(live_app):
    """Five volumes: slices 0-2 approved by reader1 (slice 1 tumour); on volume 1, reader2
    also approves slice 0 and rejects slice 2; volume 5 is a demo phantom."""
    with session_scope(live_app.sessions) as s:
        for n in range(1, 6):
            vol = add_volume(s, live_app.settings, off_centre_body(), f"vol-{n}")
            vol.is_demo = n == 5
            if n == 1:  # two assigned readers: independent reads (issue 22)
                for name in READERS:
                    s.add(VolumeAssignment(volume_id=vol.id, user_id=user(s, name).id))
                s.flush()
            for index in range(3):
                review(s, vol, index, "reader1", label="tumour" if index == 1 else "normal")
            if n == 1:
                review(s, vol, 0, "reader2")
                review(s, vol, 2, "reader2", "rejected")
    return live_app


def test_freeze_takes_only_the_chosen_volumes(five, admin):
    r = admin.post("/api/datasets", json={**FREEZE, "volume_ids": [2, 3]})
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["volume_ids"] == [2, 3] and body["num_images"] == 6
    assert {(i["volume_id"], i["slice_index"]) for i in body["items"]} == {
        (v, s) for v in (2, 3) for s in range(3)
    }
    assert body["composition"]["volume_ids"] == [2, 3]


def test_filters_label_reviewer_and_k_reviewers(five, admin):
    def preview(**filters):
        r = admin.post("/api/datasets/preview", json={"volume_ids": [1], **filters})
        assert r.status_code == 200, r.text
        return r.json()["total"]

    assert preview() == 2  # slice 2: reader2's later rejection keeps it out
    assert preview(label="tumour") == 1
    assert preview(reviewer="reader2") == 1  # only reader2's own approval (slice 0)
    assert preview(min_reviewers=2) == 1  # slice 0 approved by both
    r = admin.post("/api/datasets", json={**FREEZE, "volume_ids": [1], "min_reviewers": 2})
    assert r.status_code == 201 and [i["slice_index"] for i in r.json()["items"]] == [0]


def test_preview_counts_per_volume_and_marks_demo(five, reader):
    body = reader.post("/api/datasets/preview", json={}).json()
    assert body["total"] == 14 and body["tumour"] == 5
    assert [v["is_demo"] for v in body["volumes"]] == [False] * 4 + [True]


BAD_COMPOSITIONS = [
    ({"volume_ids": []}, 422, "volume_ids is empty"),
    ({"volume_ids": [1, 99]}, 404, "no volume with id 99"),
    ({"label": "cyst"}, 422, "label must be"),
    ({"reviewer": "nobody"}, 404, "no user named 'nobody'"),
    ({"min_reviewers": 0}, 422, "min_reviewers"),
    ({"volume_ids": [1], "min_reviewers": 3}, 409, "no approved slices match"),
    ({"split": {"val": 0.5, "test": 0.5}}, 422, "leave something for training"),
    ({"split": {"test": -0.1}}, 422, "split.test"),
    ({"volume_ids": [1, 2], "split": {"val": 0.2, "test": 0.2}}, 409, "needs more patients"),
]


def test_bad_compositions_are_clear_and_leave_nothing(five, admin):
    for change, status, words in BAD_COMPOSITIONS:
        r = admin.post("/api/datasets", json={**FREEZE, **change})
        assert r.status_code == status and words in r.json()["detail"], (change, r.text)
    with session_scope(five.sessions) as s:
        assert s.scalar(select(func.count(DatasetVersion.id))) == 0
    assert not list(five.settings.datasets_dir.iterdir())


def test_split_is_by_patient_seeded_and_disjoint(five, admin):
    ask = {**FREEZE, "split": {"val": 0.2, "test": 0.2, "seed": 7}}
    r = admin.post("/api/datasets", json=ask)
    assert r.status_code == 201, r.text
    versions = r.json()["versions"]
    assert set(versions) == {"train", "val", "test"}
    ids = {k: set(v["volume_ids"]) for k, v in versions.items()}
    assert len(ids["val"]) == len(ids["test"]) == 1 and len(ids["train"]) == 3
    assert ids["train"] | ids["val"] | ids["test"] == {1, 2, 3, 4, 5}
    assert not (ids["train"] & ids["val"] or ids["train"] & ids["test"] or ids["val"] & ids["test"])
    assert {v["split"] for v in versions.values()} == {"train", "val", "test"}
    assert len({v["split_group"] for v in versions.values()}) == 1
    for v in versions.values():  # every approved slice of a volume goes with it
        assert v["num_images"] == sum(2 if i == 1 else 3 for i in v["volume_ids"])
    again = admin.post("/api/datasets", json=ask).json()["versions"]
    assert {k: set(v["volume_ids"]) for k, v in again.items()} == ids  # same seed, same split

    with session_scope(five.sessions) as s:
        train = s.get(DatasetVersion, versions["train"]["id"])
        test = s.get(DatasetVersion, versions["test"]["id"])
        check_disjoint(train, test)  # held out: fine
        with pytest.raises(Conflict, match="not held out"):
            check_disjoint(train, s.get(DatasetVersion, again["train"]["id"]))
        with pytest.raises(Conflict, match="from itself"):
            check_disjoint(train, train)
        candidates = [d.id for d in heldout_candidates(s, train)]
        assert candidates[:2] == sorted([versions["val"]["id"], test.id], reverse=True)


def test_split_groups_volumes_of_one_patient():
    """Two volumes with one patient hash always land in the same part."""

    def row(vid, patient=None):
        volume = SimpleNamespace(id=vid, patient_key=patient)
        return VolumeCount(volume, total=3)

    rows = [row(1, "p1"), row(2, "p1"), row(3), row(4), row(5), row(6, "p2"), row(7, "p2")]
    for seed in range(8):
        parts = split_volumes(rows, Split(val=0.2, test=0.2, seed=seed))
        where = {r.volume.id: name for name, part in parts.items() for r in part}
        assert where[1] == where[2] and where[6] == where[7], seed
        assert sorted(where) == [1, 2, 3, 4, 5, 6, 7]


def test_archive_hides_a_volume_from_lists_and_freezes(five, admin, reader):
    assert reader.post("/api/volumes/2/archive").status_code == 403  # admins only
    r = admin.post("/api/volumes/2/archive")
    assert r.status_code == 200 and r.json()["archived"] is True
    assert [v["id"] for v in admin.get("/api/volumes").json()] == [1, 3, 4, 5]
    assert 2 in [v["id"] for v in admin.get("/api/volumes?archived=true").json()]
    assert admin.get("/api/volumes/2").status_code == 200  # still there for audit
    assert admin.post("/api/datasets/preview", json={}).json()["total"] == 11
    r = admin.post("/api/datasets", json={**FREEZE, "volume_ids": [2]})
    assert r.status_code == 409 and "archived" in r.json()["detail"]
    assert admin.post("/api/volumes/2/unarchive").json()["archived"] is False


def test_delete_refuses_a_used_volume_and_removes_an_unused_one(five, admin):
    admin.post("/api/datasets", json={**FREEZE, "volume_ids": [1]})
    r = admin.delete("/api/volumes/1")
    assert r.status_code == 409 and "used by dataset version" in r.json()["detail"]
    with session_scope(five.sessions) as s:
        cache = five.settings.data_dir / s.get(Volume, 3).cache_path
    assert cache.exists()
    assert admin.delete("/api/volumes/3").status_code == 204
    assert not cache.exists()
    assert admin.get("/api/volumes/3").status_code == 404
    with session_scope(five.sessions) as s:
        assert s.scalar(select(func.count(Review.id)).where(Review.volume_id == 3)) == 0
    assert admin.delete("/api/volumes/3").status_code == 404


def test_masks_flag_is_stored_on_the_version(live_app, admin):
    with session_scope(live_app.sessions) as s:
        vol = create_demo(s, live_app.settings, volumes=1, seed=0, size=64)[0]
        liver = next(i.index for i in vol.slices if i.liver_pixels)
        review(s, vol, liver, "reader1")
        vid = vol.id
    r = admin.post("/api/datasets", json={**FREEZE, "volume_ids": [vid], "masks": True})
    assert r.status_code == 201, r.text
    assert r.json()["masks"] is True
    assert admin.get(f"/api/datasets/{r.json()['id']}").json()["masks"] is True
    assert admin.get(f"/api/volumes/{vid}").json()["is_demo"] is True


def test_two_volumes_of_one_patient_are_never_split_apart(five, admin):
    """Volumes with the same (salted, de-identified) patient key from DICOM ingest."""
    with session_scope(five.sessions) as s:
        for vid in (1, 2):
            s.get(Volume, vid).patient_key = "p" * 64
    for seed in range(3):
        ask = {**FREEZE, "volume_ids": [1, 2, 3, 4], "split": {"test": 0.34, "seed": seed}}
        versions = admin.post("/api/datasets", json=ask).json()["versions"]
        parts = [set(v["volume_ids"]) for v in versions.values() if v]
        assert any({1, 2} <= p for p in parts), (seed, parts)
    one = admin.post("/api/datasets", json={**FREEZE, "volume_ids": [1]}).json()["id"]
    two = admin.post("/api/datasets", json={**FREEZE, "volume_ids": [2]}).json()["id"]
    with session_scope(five.sessions) as s:
        with pytest.raises(Conflict, match="same patient"):
            check_disjoint(s.get(DatasetVersion, one), s.get(DatasetVersion, two))
