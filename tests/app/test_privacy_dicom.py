"""De-identification without gaps: short name parts, every date form, kernels and zip members.

The attacker's exact series (issue 21): PatientName `Wu^Li`, a SeriesDescription holding the
name and a birth date, a kernel holding a name, PatientID 777. None of it may reach a page,
`/api/volumes` or the database; refusals name zip members by number.
"""

from __future__ import annotations

import re
import sqlite3
import zipfile
from pathlib import Path

import pytest
from pydicom.dataset import Dataset

from app.imaging.dicom_deid import clean_description, clean_kernel, identifiers
from tests.app.dicom_files import ct_volume, write_series, zip_folder

ATTACK = {
    "PatientName": "Wu^Li",
    "PatientID": "777",
    "SeriesDescription": "CT Wu Li liver DOB 01.01.70 ID 777",
    "ConvolutionKernel": "Redteamkernel^Victim",
    "OperatorsName": "Qi^Ng",
}
# Whole words only: `Li` inside `liver` or `777` inside a hash is no leak.
LEAKS = [r"Wu", r"Li", r"Qi", r"Ng", r"777", r"01\.01\.70", r"DOB", r"Redteamkernel", r"Victim"]


def _leaks(text: str) -> list[str]:
    return [w for w in LEAKS if re.search(rf"(?<![A-Za-z0-9]){w}(?![A-Za-z0-9])", text)]


def _header(**values) -> Dataset:
    ds = Dataset()
    for k, v in values.items():
        setattr(ds, k, v)
    return ds


def test_the_attackers_series_leaks_nowhere(live_app, admin, reader, tmp_path):
    write_series(tmp_path / "s", ct_volume(n=4), **ATTACK)
    zipped = zip_folder(tmp_path / "s", tmp_path / "s.zip")
    r = admin.post(
        "/api/volumes", files={"file": ("s.zip", zipped.read_bytes(), "application/zip")}
    )
    assert r.status_code == 201, r.text
    vid = r.json()["volumes"][0]["id"]
    one = admin.get(f"/api/volumes/{vid}").json()
    assert one["dicom"]["series_description"] is None  # a birth date in it: dropped whole
    assert one["dicom"]["kernel"] is None  # not a kernel's form: dropped
    assert one["dicom"]["contrast_phase"] is None
    texts = [r.text, admin.get("/api/volumes").text, admin.get("/volumes").text]
    for client in (admin, reader):
        for url in (f"/api/volumes/{vid}", f"/volumes/{vid}", f"/api/volumes/{vid}/slices"):
            page = client.get(url)
            assert page.status_code == 200, url
            texts.append(page.text)
    for text in texts:
        assert _leaks(text) == [], text[:400]
    db = live_app.settings.data_dir / "medsynth.db"
    with sqlite3.connect(db) as con:
        for (table,) in con.execute("select name from sqlite_master where type='table'"):
            for row in con.execute(f'select * from "{table}"'):
                assert _leaks(" ".join(map(str, row))) == [], (table, row)


@pytest.mark.parametrize(
    "description",
    [
        "ABD 01.01.70",
        "ABD 1/1/70",
        "ABD 1970-01-01",
        "ABD 19700101",
        "ABD Jan 1 1970",
        "ABD 1 January 1970",
        "ABD DOB 1970",
        "LIVER MRN 4411",
        "CHEST Mr Smithers",
    ],
)
def test_a_description_with_a_date_or_a_personal_label_is_dropped(description):
    assert clean_description(description, set()) is None


def test_every_name_part_is_scrubbed_as_a_word():
    ds = _header(PatientName="Wu^Li^X", ReferringPhysicianName="Bo^Al")
    secrets = identifiers(ds)
    assert {"Wu", "Li", "X", "Bo", "Al"} <= secrets
    assert clean_description("CT Wu Li liver X bolus", secrets) == "CT liver bolus"
    assert clean_description("ABD PORTAL VENOUS 5mm B30f", secrets) == "ABD PORTAL VENOUS 5mm B30f"


def test_a_person_name_in_any_element_is_an_identifier():
    inner = _header(PersonName="Zed^Ox")
    ds = _header(PatientName="A^B", ContentCreatorName="Quux^Iv")
    ds.VerifyingObserverSequence = [inner]
    assert {"Quux", "Iv", "Zed", "Ox", "A", "B"} <= identifiers(ds)


@pytest.mark.parametrize(
    ("kernel", "kept"),
    [
        ("B30f", "B30f"),
        ("Br40d", "Br40d"),
        ("FC03", "FC03"),
        ("STANDARD", "STANDARD"),
        (["Br40d", "3"], "Br40d\\3"),
        ("Redteamkernel^Victim", None),
        ("Redteamkernel", None),
        ("Wu", None),  # the patient's own name part
        ("B30f DOB 1970", None),
    ],
)
def test_only_a_kernel_of_a_kernels_form_is_kept(kernel, kept):
    ds = _header(PatientName="Wu^Li", ConvolutionKernel=kernel)
    assert clean_kernel(ds, identifiers(ds)) == kept


def test_a_refused_zip_names_members_by_number(live_app, admin, tmp_path):
    write_series(tmp_path / "s", ct_volume(n=3))
    hostile = tmp_path / "link.zip"
    with zipfile.ZipFile(hostile, "w") as zf:
        for p in sorted((tmp_path / "s").iterdir()):
            zf.write(p, f"Redteam^Victim/{p.name}")
        info = zipfile.ZipInfo("Redteam^Victim/link.dcm")
        info.external_attr = 0o120777 << 16
        zf.writestr(info, "/etc/passwd")
    r = admin.post(
        "/api/volumes", files={"file": ("x.zip", hostile.read_bytes(), "application/zip")}
    )
    assert r.status_code == 422, r.text
    assert "member 4 is a symbolic link" in r.json()["detail"]
    assert "Redteam" not in r.text and "Victim" not in r.text and "link.dcm" not in r.text


def test_a_corrupt_member_is_named_by_number(live_app, admin, tmp_path):
    write_series(tmp_path / "s", ct_volume(n=3))
    zipped = zip_folder(tmp_path / "s", tmp_path / "s.zip")
    renamed = tmp_path / "named.zip"
    with zipfile.ZipFile(zipped) as src, zipfile.ZipFile(renamed, "w") as dst:
        for n, name in enumerate(src.namelist()):
            dst.writestr(f"Wu^Li/{n}.dcm", src.read(name), zipfile.ZIP_DEFLATED)
    data = bytearray(renamed.read_bytes())
    first = Path(renamed).stat().st_size // 6
    data[first : first + 200] = bytes(200)  # damage the first member's deflate data
    r = admin.post("/api/volumes", files={"file": ("x.zip", bytes(data), "application/zip")})
    assert r.status_code == 422 and "member 1 is corrupt" in r.json()["detail"], r.text
    assert "Wu^Li" not in r.text and not re.search(r"\d\.dcm", r.text)
