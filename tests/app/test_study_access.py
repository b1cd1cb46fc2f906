"""Blinding with no way around it, over real HTTP: while a reader has an unfinished study, every
route that shows the study's source images answers 403 and says why; study image bytes are never
a dataset's files and have one length, so their size tells nothing."""

from __future__ import annotations

import hashlib
import shutil
import zipfile
from pathlib import Path

import pytest
from sqlalchemy import select

from app.db import session_scope
from app.models import (
    DatasetItem,
    DatasetVersion,
    MetricRun,
    Review,
    Snapshot,
    StudyImage,
    User,
    utcnow,
)
from tests.app.curation_data import add_volume, off_centre_body
from tests.app.study_setup import (  # noqa: F401  (tiny_run_fixture provides tiny_run)
    RES,
    _dataset,
    add_world,
    answer_all,
    create_study,
    tiny_run_fixture,
)

pytestmark = pytest.mark.slow  # each study runs `python -m trainer generate`


def _items(session, ds, volume, n: int, user_id: int) -> None:
    for position in range(n):
        review = Review(volume_id=volume.id, slice_index=position % 6, user_id=user_id,
                        decision="approved", label="normal")  # fmt: skip
        session.add(review)
        session.flush()
        session.add(DatasetItem(dataset_id=ds.id, position=position, volume_id=volume.id,
                                slice_index=position % 6, label="normal",
                                review_id=review.id))  # fmt: skip


def _world(live_app, tiny_run) -> dict:
    """Training data from volume A, a held-out version from volume B (another patient), a
    third version that shares volume A, and an unrelated volume C; a metric run row."""
    settings = live_app.settings
    world = add_world(live_app.sessions, settings.data_dir / "fx", tiny_run)
    with session_scope(live_app.sessions) as session:
        admin = session.scalar(select(User).where(User.username == "admin"))
        reader1 = session.scalar(select(User).where(User.username == "reader1"))
        vols = {k: add_volume(session, settings, off_centre_body(), f"vol-{k}") for k in "ABC"}
        train = session.get(DatasetVersion, world.dataset_id)
        _items(session, train, vols["A"], 16, admin.id)
        held_zip = settings.data_dir / "fx" / "held.zip"
        shutil.copy(train.zip_path, held_zip)
        _rewrite_pixels(held_zip)
        held = _dataset(session, "held out", held_zip, 16)
        _items(session, held, vols["B"], 16, admin.id)
        session.add(Review(volume_id=vols["B"].id, slice_index=2, user_id=reader1.id,
                           decision="approved", label="normal"))  # fmt: skip
        sharing = _dataset(session, "shares A", Path(train.zip_path), 16)
        _items(session, sharing, vols["A"], 16, admin.id)
        run = MetricRun(snapshot_id=world.snapshot_id, state="completed", metrics=["c2st"],
                        request_key="k", options={}, result={"metrics": {}, "options": {"num": 2},
                        "timings": {"total_s": 1.0}, "estimate_s": None,
                                "notes": [], "environment": {}},
                        finished_at=utcnow())  # fmt: skip
        session.add(run)
        session.flush()
        return {"train": train.id, "held": held.id, "sharing": sharing.id, "run": run.id,
                "A": vols["A"].id, "B": vols["B"].id, "C": vols["C"].id,
                "snapshot": world.snapshot_id,
                "job": session.get(Snapshot, world.snapshot_id).job_id,
                "world": world}  # fmt: skip


def _rewrite_pixels(zip_path: Path) -> None:
    """Another patient's images: the same zip layout, every pixel inverted."""
    from io import BytesIO

    from PIL import Image, ImageOps

    with zipfile.ZipFile(zip_path) as zf:
        members = {n: zf.read(n) for n in zf.namelist()}
    with zipfile.ZipFile(zip_path, "w") as zf:
        for name, data in members.items():
            if name.endswith(".png"):
                buf = BytesIO()
                ImageOps.invert(Image.open(BytesIO(data)).convert("L")).save(buf, "PNG")
                data = buf.getvalue()
            zf.writestr(name, data)


def _source_urls(w: dict) -> list[tuple[str, str]]:
    """(method, URL) of every route that shows one of the study's source images."""
    urls = []
    for d in (w["train"], w["held"], w["sharing"]):
        urls += [("GET", f"/api/datasets/{d}/export.zip"), ("GET", f"/datasets/{d}"),
                 ("GET", f"/api/datasets/{d}/thumbs/0.png")]  # fmt: skip
    for v in (w["A"], w["B"]):
        urls += [("GET", f"/api/volumes/{v}/slices/0.png"), ("GET", f"/volumes/{v}"),
                 ("GET", f"/api/volumes/{v}/slices/0.raw"),
                 ("GET", f"/api/volumes/{v}/reformat/coronal.png")]  # fmt: skip
    s, j = w["snapshot"], w["job"]
    urls += [("GET", f"/api/snapshots/{s}/samples.png"), ("GET", f"/snapshots/{s}"),
             ("GET", f"/api/snapshots/{s}/generate.zip?seeds=0-1"),
             ("POST", f"/api/snapshots/{s}/generate"), ("GET", f"/snapshots/{s}/generate?seeds=0"),
             ("GET", f"/snapshots/{s}/metrics"),
             ("GET", "/snapshots/generated/" + "a" * 32 + "/seed0000.png"),
             ("GET", f"/api/jobs/{j}/samples/latest.png"), ("GET", f"/jobs/{j}"),
             ("GET", f"/api/metric-runs/{w['run']}/pairs/0/real.png")]  # fmt: skip
    return urls


def _get(client, method: str, url: str):
    if method == "POST":
        return client.post(url, json={"seeds": "0-1"})
    return client.get(url)


def test_a_reader_mid_study_gets_403_on_every_source_image_route(live_app, admin, tiny_run):
    w = _world(live_app, tiny_run)
    urls = _source_urls(w)
    with live_app.client("reader1") as r1:
        before = {u: _get(r1, m, u).status_code for m, u in urls}
    assert 403 not in before.values(), before
    form = admin.get("/studies").text  # the form warns: reader1 reviewed held-out slices
    assert "reader1 reviewed 3 of the 16 images of dataset" in form and "not blind" in form
    study = create_study(admin, w["world"], n_real=4, n_fake=4, readers=["reader1"])
    assert study["real_dataset_id"] == w["held"] and study["reals_held_out"]
    with session_scope(live_app.sessions) as session:  # reader1 reviewed slice 2 of volume B
        reals = session.scalars(select(StudyImage.source).where(~StudyImage.synthetic)).all()
    seen = sum(int(name[3:11]) % 6 == 2 for name in reals)  # imgNNNNNNNN.png -> slice N % 6
    assert study["readers"][0]["reviewed_real_images"] == seen
    with live_app.client("reader1") as r1, live_app.client("reader2") as r2:
        for method, url in urls:
            r = _get(r1, method, url)
            assert r.status_code == 403, (url, r.status_code)
            text = r.json()["detail"] if url.startswith("/api") else r.text
            assert "Hidden while you read study" in text and study["name"] in text, url
            assert "answered 0 of 8" in text
        page = r1.get(f"/datasets/{w['train']}")
        assert "text/html" in page.headers["content-type"] and "would unblind you" in page.text
        assert r1.get(f"/api/volumes/{w['C']}/slices/0.png").status_code == 200  # unrelated
        assert r1.get(f"/api/datasets/{w['train']}").status_code == 200  # facts, no pixels
        assert _get(r2, *urls[0]).status_code == 200  # not a reader of this study
        assert "hidden from you" in r1.get("/studies").text  # the reader's own page says so
        assert "hidden from you" not in r2.get("/studies").text
        answer_all(r1, study["id"])
        after = {u: _get(r1, m, u).status_code for m, u in urls}
    assert 403 not in after.values(), after  # shown again once the reader has finished


def _best_size_threshold_accuracy(sizes: list[int], synthetic: list[bool]) -> float:
    """The best accuracy any rule "size > t means synthetic" (or the reverse) reaches."""
    best = 0.0
    for t in sorted(set(sizes)) + [min(sizes) - 1]:
        called = [s > t for s in sizes]
        acc = sum(c == y for c, y in zip(called, synthetic, strict=True)) / len(sizes)
        best = max(best, acc, 1 - acc)
    return best


def test_study_images_have_one_length_and_are_not_dataset_files(live_app, admin, tiny_run):
    world = add_world(live_app.sessions, live_app.settings.data_dir / "fx", tiny_run)
    study = create_study(admin, world, n_real=8, n_fake=8, readers=["reader1"])
    with session_scope(live_app.sessions) as session:
        images = session.scalars(select(StudyImage).where(StudyImage.study_id == study["id"]))
        truth = {i.sha256: i.synthetic for i in images}
    with zipfile.ZipFile(live_app.settings.data_dir / "fx" / "train.zip") as zf:
        dataset_hashes = {hashlib.sha256(zf.read(n)).hexdigest() for n in zf.namelist()}
    sizes, synthetic = [], []
    with live_app.client("reader1") as r1:
        while (nxt := r1.get(f"/api/studies/{study['id']}/next")).status_code == 200:
            body = nxt.json()
            data = r1.get(body["image"]).content
            digest = hashlib.sha256(data).hexdigest()
            assert digest not in dataset_hashes
            sizes.append(len(data))
            synthetic.append(truth[digest])
            r1.post(
                f"/api/studies/{study['id']}/answers", json={"trial": body["trial"], "rating": 3}
            )
    assert len(sizes) == 16 and len(set(sizes)) == 1
    assert sizes[0] > (RES - 1) ** 2  # stored, not compressed
    assert _best_size_threshold_accuracy(sizes, synthetic) == 0.5  # chance in a 8 + 8 design
