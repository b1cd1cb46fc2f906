"""Issue 22 §5: the job form's re-fills keep the preset and what was typed, and its default
dataset is a curated one, not whichever reviewer froze last."""

from __future__ import annotations

import re

from sqlalchemy import select

from app.db import session_scope
from app.models import DatasetVersion, MetricRun, User
from app.trainer_client import calls
from tests.app.job_helpers import make_dataset
from tests.app.metric_helpers import metric_world
from tests.app.study_setup import tiny_run_fixture  # noqa: F401  (provides tiny_run)


def _field(html: str, name: str) -> str:
    m = re.search(rf'<input id="[^"]+" name="{name}"[^>]*value="([^"]*)"', html)
    assert m, f"no {name} field"
    return m.group(1)


def _selected_dataset(html: str) -> str:
    select_html = html.split('id="jf-dataset"', 1)[1].split("</select>", 1)[0]
    m = re.search(r'<option value="(\d+)" selected', select_html)
    assert m, "no dataset selected"
    return m.group(1)


def _set(sessions, ds_id: int, **fields) -> None:
    with session_scope(sessions) as session:
        row = session.get(DatasetVersion, ds_id)
        for key, value in fields.items():
            setattr(row, key, value)


def _user_id(sessions, name: str) -> int:
    with session_scope(sessions) as session:
        return session.scalar(select(User.id).where(User.username == name))


def test_changing_dataset_keeps_cpu_preset_sizes(live_app, admin):
    first = make_dataset(live_app.sessions, live_app.settings, res=16)
    second = make_dataset(live_app.sessions, live_app.settings, res=32)
    # what the dataset <select> sends: the whole form, the preset still "cpu", sizes as shown
    r = admin.get("/jobs/form", params={"dataset_id": first, "preset": "cpu", "cbase": "",
                                        "cmax": "", "zdim": ""})  # fmt: skip
    assert r.status_code == 200
    assert (_field(r.text, "cbase"), _field(r.text, "cmax")) == ("2048", "128")
    assert _field(r.text, "zdim") == "128" and _selected_dataset(r.text) == str(first)
    r = admin.get("/jobs/form", params={"dataset_id": second})  # the dataset alone
    assert _field(r.text, "cbase") == "2048" and _selected_dataset(r.text) == str(second)
    # a size the user typed survives the re-fill for another dataset
    r = admin.get("/jobs/form", params={"dataset_id": second, "preset": "cpu", "cbase": "4096",
                                        "cmax": "128", "zdim": "128", "kimg": "12"})  # fmt: skip
    assert _field(r.text, "cbase") == "4096" and _field(r.text, "kimg") == "12"
    # choosing the paper's network is the one change that sets the sizes back to auto
    r = admin.get("/jobs/form", params={"dataset_id": second, "preset": "auto", "cbase": "2048",
                                        "changed": "preset"})  # fmt: skip
    assert _field(r.text, "cbase") == "" and "auto: 16384" in r.text


def test_default_dataset_is_the_newest_admin_or_split_version(live_app, admin):
    admin_id = _user_id(live_app.sessions, "admin")
    reader_id = _user_id(live_app.sessions, "reader1")
    by_admin = make_dataset(live_app.sessions, live_app.settings)
    _set(live_app.sessions, by_admin, created_by_id=admin_id)
    quick = make_dataset(live_app.sessions, live_app.settings)
    _set(live_app.sessions, quick, created_by_id=reader_id)
    assert _selected_dataset(admin.get("/jobs").text) == str(by_admin)
    train = make_dataset(live_app.sessions, live_app.settings)
    _set(live_app.sessions, train, created_by_id=reader_id, split="train", split_group="g")
    test = make_dataset(live_app.sessions, live_app.settings)
    _set(live_app.sessions, test, created_by_id=admin_id, split="test", split_group="g")
    late_quick = make_dataset(live_app.sessions, live_app.settings)
    _set(live_app.sessions, late_quick, created_by_id=reader_id)
    assert _selected_dataset(admin.get("/jobs").text) == str(train)


def _completed_run(sessions, snapshot_id: int, result: dict) -> None:
    with session_scope(sessions) as session:
        run = MetricRun(snapshot_id=snapshot_id, state="completed", metrics=["fid"],
                        options={"num": 24}, request_key="0" * 64, result=result)  # fmt: skip
        session.add(run)


def test_metric_details_say_which_features_were_used(live_app, admin, tiny_run):
    world = metric_world(live_app, tiny_run)
    inception = {"name": "inception-v3-compat", "layer": "2048"}
    # what the trainer stores when the Inception weights are missing: FID skipped, memorisation
    # on pixel NCC only, yet an extractor planned for it and its weights file listed
    _completed_run(live_app.sessions, world.snapshot_id, {
        "metrics": {"memorization": {"copy_share": 0.0, "num_copies": 0, "num_generated": 24,
                                     "copy_threshold_ncc": 0.95, "top_pairs": []}},
        "skipped": {"fid": "needs weights-inception.pt (missing) in the weights folder"},
        "environment": {"feature_extractors": {"memorization": inception},
                        "weights": {"weights-inception.pt": None}},
        "options": {"num": 24},
    })  # fmt: skip
    html = admin.get(f"/snapshots/{world.snapshot_id}").text
    details = html.split('class="metric-env"', 1)[1].split("</details>", 1)[0]
    assert "inception-v3-compat" not in details
    assert "pixel NCC only (the Inception weights are missing)" in details
    assert 'fid features</th><td class="mono">none: skipped, needs weights-inception' in details
    assert "weights-inception.pt · missing, not used" in details


def test_snapshot_page_starts_no_trainer_process(live_app, admin, tiny_run):
    world = metric_world(live_app, tiny_run)
    calls._snapshot_facts.cache_clear()  # a first visit: nothing known about the file yet
    r = admin.get(f"/snapshots/{world.snapshot_id}")
    assert r.status_code == 200 and f"Snapshot #{world.snapshot_id}" in r.text
    assert calls._snapshot_facts.cache_info().misses == 0  # `info snapshot` never ran
