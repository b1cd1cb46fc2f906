"""Studies on a conditional snapshot, created with nothing but the form's default values."""

from __future__ import annotations

import re
from html import unescape

import pytest
from sqlalchemy import select

from app.db import session_scope
from app.models import Study, StudyImage
from tests.app.study_setup import (  # noqa: F401  (the fixtures provide tiny runs)
    add_world,
    tiny_cond_run_fixture,
    tiny_run_fixture,
    wait_ready,
)

pytestmark = pytest.mark.slow  # each study runs `python -m trainer generate`


def _form_defaults(html: str) -> dict[str, str]:
    """What a browser would submit for the new-study form untouched: every selected option
    (or the first one) and every input's value."""
    form = html[html.index('id="study-form"') :]
    form = form[: form.index("</form>")]
    values = {}
    for name, body in re.findall(r'<select[^>]*name="(\w+)"[^>]*>(.*?)</select>', form, re.S):
        options = re.findall(r'<option value="([^"]*)"([^>]*)>', body)
        chosen = [v for v, attrs in options if "selected" in attrs] or [options[0][0]]
        values[name] = unescape(chosen[0])
    for attrs in re.findall(r"<input([^>]*)>", form):
        name = re.search(r'name="(\w+)"', attrs)
        value = re.search(r'value="([^"]*)"', attrs)
        if name and value and "checkbox" not in attrs:
            values[name.group(1)] = unescape(value.group(1))
    return values


def test_a_study_on_a_conditional_snapshot_is_created_with_the_default_form(
    live_app, admin, tiny_cond_run
):
    world = add_world(live_app.sessions, live_app.settings.data_dir / "fx", tiny_cond_run,
                      other_patients=True, cond=True)  # fmt: skip
    page = admin.get("/studies")
    assert page.status_code == 200
    values = _form_defaults(page.text)
    assert values["snapshot_id"] == str(world.snapshot_id)
    assert values["dataset_id"] == str(world.dataset_id)  # the snapshot's own dataset
    assert values["holdout_dataset_id"] == str(world.holdout_id)  # other patients
    assert values["label"] == "mix" and "50 % tumour" in page.text
    assert values["n_real"] == "16" and values["n_fake"] == "16"  # what the version can give
    r = admin.post("/studies", data={**values, "readers": ["2"]}, follow_redirects=False)
    assert r.status_code == 303, r.text
    assert "--class" not in r.text
    wait_ready(admin, admin.get("/api/studies").json()[0]["id"])  # images made in the background
    with session_scope(live_app.sessions) as session:
        study = session.scalar(select(Study))
        images = session.scalars(select(StudyImage).where(StudyImage.study_id == study.id)).all()
        assert study.class_mix == {"0": {"real": 8, "fake": 8}, "1": {"real": 8, "fake": 8}}
        kinds = sorted((i.synthetic, i.label) for i in images)
        assert kinds == sorted([(s, c) for s in (False, True) for c in (0, 1)] * 8)
        assert study.reals_held_out and study.real_dataset_id == world.holdout_id


def test_the_form_follows_the_chosen_snapshot(live_app, admin, tiny_run, tiny_cond_run):
    plain = add_world(live_app.sessions, live_app.settings.data_dir / "a", tiny_run)
    cond = add_world(live_app.sessions, live_app.settings.data_dir / "b", tiny_cond_run, cond=True)
    r = admin.get(f"/studies/form?snapshot_id={plain.snapshot_id}", headers={"HX-Request": "true"})
    values = _form_defaults(r.text)
    assert values["dataset_id"] == str(plain.dataset_id) and values["label"] == ""
    assert values["holdout_dataset_id"] == str(plain.dataset_id)  # no other patients: training
    assert "No version of other patients" in r.text
    typed = "&name=Typed+name&truncation=0.6&readers=2&rate_usable=true"  # kept by the re-fill
    r = admin.get(f"/studies/form?snapshot_id={cond.snapshot_id}{typed}",
                  headers={"HX-Request": "true"})  # fmt: skip
    values = _form_defaults(r.text)
    assert values["dataset_id"] == str(cond.dataset_id)
    assert values["name"] == "Typed name" and values["truncation"] == "0.6"
    assert 'value="2" checked' in r.text and 'value="true" checked' in r.text
    # a conditional snapshot asked for "no class" is refused in the app's words
    body = {"snapshot_id": cond.snapshot_id, "dataset_id": cond.dataset_id, "n_real": 2,
            "n_fake": 2, "readers": ["reader1"], "mix_classes": False}  # fmt: skip
    r = admin.post("/api/studies", json=body)
    assert r.status_code == 422 and "choose one class" in r.json()["detail"]
    r = admin.post("/api/studies", json={**body, "mix_classes": None, "label": 1,
                                         "snapshot_id": plain.snapshot_id,
                                         "dataset_id": plain.dataset_id})  # fmt: skip
    assert r.status_code == 422 and "trained without labels" in r.json()["detail"]
