"""What PostgreSQL checks and SQLite lets through: 32-bit INTEGER columns, text lengths. These
tests always run on PostgreSQL (MEDSYNTH_TEST_POSTGRES_URL), whatever the selection."""

from __future__ import annotations

import pytest

from app.db import session_scope
from app.models import Job, Snapshot, Study, StudyImage
from app.services.accounts.users import create_user
from app.services.studies.create import assign
from tests.app.job_helpers import make_dataset
from tests.conftest import PASSWORD


@pytest.fixture
def database_url(postgres_url):
    """Every fixture of this module (settings, db, live_app) on a fresh PostgreSQL database."""
    return postgres_url


def test_a_readers_order_seed_fits_postgresqls_integer(db, settings):
    assert settings.database_url.startswith("postgresql")
    ds = make_dataset(db, settings)
    with session_scope(db) as s:
        job = Job(dataset_id=ds, state="completed", options={}, run_dir="r", resolution=16,
                  total_kimg=1.0, device="cpu")  # fmt: skip
        snap = Snapshot(kimg=1, nimg=1000, path="p", size_bytes=1)
        job.snapshots.append(snap)
        s.add(job)
        s.flush()
        study = Study(name="s", snapshot_id=snap.id, dataset_id=ds, real_dataset_id=ds,
                      resolution=16, n_real=1, n_fake=1, seed=0)  # fmt: skip
        study.images = [StudyImage(synthetic=k == 1, source=f"i{k}", path="x", sha256="0" * 64)
                        for k in range(2)]  # fmt: skip
        s.add(study)
        s.flush()
        for i in range(20):  # a 62-bit seed overflowed at once (2^31 of 2^62 values fit)
            assign(study, create_user(s, f"reader{i + 10}", "reviewer", PASSWORD))
    with session_scope(db) as s:
        assert len(s.get(Study, study.id).readers) == 20


def test_an_id_beyond_32_bits_is_a_clear_4xx_on_postgresql(admin):
    for path in ("/api/jobs/3000000000", "/api/volumes/3000000000", "/api/datasets/3000000000"):
        r = admin.get(path)
        assert 400 <= r.status_code < 500, (path, r.status_code, r.text[:200])
        assert r.json()["detail"]


def test_text_longer_than_its_column_is_a_clear_4xx_on_postgresql(admin):
    r = admin.post("/api/me/tokens", json={"name": "n" * 500, "password": PASSWORD})
    assert 400 <= r.status_code < 500, r.text[:200]
    assert r.json()["detail"]
