"""Independent second reads (issue 22 item 2): an assigned reviewer sees none of the others'
decisions on a slice until they have decided it, admins may reveal them, agreement is
Cohen's / Fleiss' kappa over the slices all readers read, and "approved by >= k reviewers"
counts independent reads."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from alembic import command

from app.db import session_scope
from app.migrate import alembic_config, upgrade
from app.services.curation.agreement import cohen_kappa, fleiss_kappa
from tests.app.curation_data import add_volume, off_centre_body

FREEZE = {"name": "k2", "resolution": 32, "window": "liver", "bit_depth": 8, "volume_ids": [1]}


@pytest.fixture
def volume(live_app, admin):
    """One 12-slice volume with reader1 and reader2 assigned."""
    with session_scope(live_app.sessions) as s:
        add_volume(s, live_app.settings, off_centre_body(shape=(96, 80, 12)), "vol-1")
    r = admin.put("/api/volumes/1/reviewers", json={"reviewers": ["reader1", "reader2"]})
    assert r.status_code == 200, r.text
    return live_app


def _decide(app, user: str, decisions: dict[int, str]) -> None:
    with app.client(user) as c:
        for index, decision in decisions.items():
            r = c.put(f"/api/volumes/1/slices/{index}/review", json={"decision": decision})
            assert r.status_code == 200, r.text


def test_kappa_formulas_on_hand_computed_cases():
    # 10 slices: both approve 4, A approves / B rejects 2, A rejects / B approves 1, both
    # reject 3. p_o = 7/10; A approves 6/10, B 5/10: p_e = .6*.5 + .4*.5 = .5; kappa = .4
    pairs = [("approved",) * 2] * 4 + [("approved", "rejected")] * 2
    pairs += [("rejected", "approved")] + [("rejected",) * 2] * 3
    assert cohen_kappa(pairs) == pytest.approx(0.4)
    # 3 readers, 4 slices: aaa, aar, arr, rrr. P_i = 1, 1/3, 1/3, 1 -> P_bar = 2/3;
    # p_a = p_r = 6/12 -> P_e = .5; kappa = (2/3 - 1/2) / (1/2) = 1/3
    items = [["approved"] * 3, ["approved", "approved", "rejected"]]
    items += [["approved", "rejected", "rejected"], ["rejected"] * 3]
    assert fleiss_kappa(items) == pytest.approx(1 / 3)
    assert cohen_kappa([("approved", "approved")] * 3) is None  # chance agreement 1
    assert cohen_kappa([]) is None


def test_a_second_reader_cannot_see_the_first_until_deciding(volume, admin):
    with volume.client("reader1") as r1:
        r1.put("/api/volumes/1/slices/3/review", json={"decision": "approved", "note": "clear"})
    with volume.client("reader2") as r2:
        assert r2.get("/api/volumes/1/slices/3/reviews").json() == []
        row = r2.get("/api/volumes/1/slices").json()[3]
        assert row["decision"] is None and row["reviewers"] == 0
        assert r2.get("/api/volumes/1/slices/3/agreement").json()["reviewers"] == 0
        assert r2.get("/api/volumes/1").json()["progress"]["approved"] == 0  # own progress
        assert r2.get("/api/volumes").json()[0]["progress"]["approved"] == 0
        assert "1 approved" not in r2.get("/volumes").text
        panel = r2.get("/volumes/1/slices/3/panel", headers={"HX-Request": "true"}).text
        assert "reader1" not in panel and "clear" not in panel and "APPROVED" not in panel
        assert "hidden until you decide" in panel
        r = r2.get("/api/volumes/1/slices", params={"reveal": "true"})
        assert r.status_code == 403 and "only an admin" in r.json()["detail"]
        # once decided, the other reads show
        r2.put("/api/volumes/1/slices/3/review", json={"decision": "rejected"})
        history = r2.get("/api/volumes/1/slices/3/reviews").json()
        assert [(h["user"], h["decision"]) for h in history] == [
            ("reader2", "rejected"),
            ("reader1", "approved"),
        ]
        assert r2.get("/api/volumes/1/slices/3/agreement").json()["reviewers"] == 2
    # an unassigned admin sees everything; an assigned one only when revealing
    assert len(admin.get("/api/volumes/1/slices/3/reviews").json()) == 2
    with volume.client("reader1") as r1:
        r1.put("/api/volumes/1/slices/4/review", json={"decision": "approved"})
    admin.put("/api/volumes/1/reviewers", json={"reviewers": ["reader1", "reader2", "admin"]})
    assert admin.get("/api/volumes/1/slices/4/reviews").json() == []
    revealed = admin.get("/api/volumes/1/slices/4/reviews", params={"reveal": "true"}).json()
    assert [h["user"] for h in revealed] == ["reader1"]


def test_kappa_on_the_volume_and_dataset_pages(volume, admin):
    # reader1 / reader2 on slices 0-9 as in the hand-computed Cohen case: kappa .4 over 10
    first = ["approved"] * 6 + ["rejected"] * 4
    second = ["approved"] * 4 + ["rejected"] * 2 + ["approved"] + ["rejected"] * 3
    _decide(volume, "reader1", dict(enumerate(first)))
    _decide(volume, "reader2", dict(enumerate(second)))
    _decide(volume, "reader1", {10: "approved"})  # read by one reader only: not counted
    agreement = admin.get("/api/volumes/1").json()["agreement"]
    assert agreement["method"] == "cohen" and agreement["readers"] == ["reader1", "reader2"]
    assert agreement["kappa"] == pytest.approx(0.4) and agreement["slices"] == 10
    assert agreement["observed"] == pytest.approx(0.7)
    page = admin.get("/volumes/1").text
    assert "Cohen" in page and "κ" in page and "<b>0.40</b>" in page and "<b>10</b> slices" in page
    # a blinded reader's kappa rests on the slices they read themselves
    with volume.client("reader2") as r2:
        assert r2.get("/api/volumes/1").json()["agreement"]["slices"] == 10

    r = admin.post("/api/datasets", json=FREEZE)
    assert r.status_code == 201, r.text
    dataset = admin.get(f"/api/datasets/{r.json()['id']}").json()
    assert dataset["agreement"]["kappa"] == pytest.approx(0.4)
    assert dataset["agreement"]["slices"] == 10
    assert "<b>0.40</b>" in admin.get(f"/datasets/{r.json()['id']}").text


def test_fleiss_kappa_for_three_readers_over_slices_all_read(volume, admin):
    admin.put("/api/volumes/1/reviewers", json={"reviewers": ["reader1", "reader2", "admin"]})
    a, r = "approved", "rejected"
    _decide(volume, "reader1", {0: a, 1: a, 2: a, 3: r, 4: a})
    _decide(volume, "reader2", {0: a, 1: a, 2: r, 3: r, 4: r})
    _decide(volume, "admin", {0: a, 1: r, 2: r, 3: r})  # slice 4: two readers only
    agreement = admin.get("/api/volumes/1").json()["agreement"]
    assert agreement["method"] == "fleiss" and agreement["slices"] == 4
    assert agreement["kappa"] == pytest.approx(1 / 3, abs=1e-4)


def test_k_reviewers_counts_only_independent_reads(volume, admin):
    _decide(volume, "reader1", {0: "approved", 1: "approved"})
    _decide(volume, "reader2", {0: "approved"})  # assigned, blinded: independent
    _decide(volume, "admin", {1: "approved"})  # not assigned: saw reader1's approval
    preview = admin.post("/api/datasets/preview", json={"volume_ids": [1], "min_reviewers": 2})
    assert preview.json()["total"] == 1
    r = admin.post("/api/datasets", json={**FREEZE, "min_reviewers": 2})
    assert [i["slice_index"] for i in r.json()["items"]] == [0]
    # k = 1 takes any approval
    one = admin.post("/api/datasets/preview", json={"volume_ids": [1]}).json()
    assert one["total"] == 2
    # a reader who changes their mind after the others became visible is no longer independent
    _decide(volume, "reader2", {0: "rejected"})
    _decide(volume, "reader2", {0: "approved"})
    preview = admin.post("/api/datasets/preview", json={"volume_ids": [1], "min_reviewers": 2})
    assert preview.json()["total"] == 0


def test_the_migration_marks_earlier_reads_seen_by_a_later_reviewer(tmp_path):
    """Before 0013 everyone saw every decision: a review after another reviewer's is not
    independent; the column goes away again on downgrade."""
    url = f"sqlite:///{tmp_path / 'm.db'}"
    upgrade(url, "0013")
    command.downgrade(alembic_config(url), "0013-1")
    engine = sa.create_engine(url)
    rows = [(1, 3, 1), (2, 3, 2), (3, 3, 1), (4, 5, 2), (5, 5, 2)]  # id, slice, user
    with engine.begin() as c:
        for uid in (1, 2):
            c.execute(
                sa.text(
                    "INSERT INTO users (id, username, password_hash, role, is_active, created_at)"
                    " VALUES (:id, :name, 'x', 'reviewer', :yes, '2026-01-01 00:00:00')"
                ),
                {"id": uid, "name": f"r{uid}", "yes": True},
            )
        c.execute(
            sa.text(
                "INSERT INTO volumes (id, name, source_path, source_sha256, cache_path, shape,"
                " spacing, affine, hu_min, hu_max, created_at) VALUES (1, 'v', 'v', 'h', 'v',"
                " '[1, 1, 8]', '[1, 1, 1]', '[]', 0, 1, '2026-01-01 00:00:00')"
            )
        )
        for rid, index, uid in rows:
            c.execute(
                sa.text(
                    "INSERT INTO reviews (id, volume_id, slice_index, user_id, decision, label,"
                    " note, created_at) VALUES (:id, 1, :i, :u, 'approved', 'normal', '',"
                    " '2026-01-01 00:00:00')"
                ),
                {"id": rid, "i": index, "u": uid},
            )
    upgrade(url, "0013")
    with engine.connect() as c:
        flags = dict(c.execute(sa.text("SELECT id, independent FROM reviews ORDER BY id")).all())
    assert flags == {1: True, 2: False, 3: False, 4: True, 5: True}
    command.downgrade(alembic_config(url), "0013-1")
    with engine.connect() as c:
        assert "independent" not in {col["name"] for col in sa.inspect(c).get_columns("reviews")}
    engine.dispose()


def test_the_home_page_keeps_second_reads_blind(volume):
    _decide(volume, "reader1", {3: "approved", 4: "rejected"})
    _decide(volume, "reader2", {4: "approved"})
    with volume.client("reader2") as r2:
        html = r2.get("/").text
    assert "approved slice 4 of vol-1" not in html  # reader1 on slice 4 (index 3): hidden
    assert "rejected slice 5 of vol-1" in html and "approved slice 5 of vol-1" in html
    with volume.client("admin") as admin:  # not assigned: sees every decision
        assert "approved slice 4 of vol-1" in admin.get("/").text


def test_the_dataset_page_names_no_reviewer_a_blind_reader_has_not_read(volume, admin):
    _decide(volume, "reader1", {3: "approved", 4: "approved"})
    _decide(volume, "reader2", {4: "approved"})
    dataset_id = admin.post("/api/datasets", json=FREEZE).json()["id"]
    with volume.client("reader2") as r2:
        html = r2.get(f"/datasets/{dataset_id}").text
    captions = html.split('class="grid dataset-grid"')[1]
    assert "slice 4" in captions and "reader1" not in captions.split("slice 5")[0]
    assert "reader1" in admin.get(f"/datasets/{dataset_id}").text.split("dataset-grid")[1]
