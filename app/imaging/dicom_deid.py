"""De-identification: what of a DICOM header may be kept, and salted keys for the rest.

Kept: pixel data and geometry (elsewhere), modality, kVp, a reconstruction kernel that has a
kernel's form, a contrast phase word, and a series description scrubbed of identifiers (or
dropped when it holds a date, a long number or a label of personal data). PatientID and the
Study and Series Instance UIDs are kept only as HMAC-SHA256 under a secret salt: stable within one
installation (re-uploads and a patient's other series are recognised), useless elsewhere.
Everything else (names, birth date, accession number, institution, physicians...) is dropped,
and any text that is shown (messages, member names) is scrubbed of those values first.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from dataclasses import dataclass

from pydicom.dataset import Dataset
from pydicom.multival import MultiValue

from app.settings import Settings

IDENTIFYING = (
    "PatientName", "PatientID", "OtherPatientIDs", "PatientBirthDate", "AccessionNumber",
    "InstitutionName", "InstitutionAddress", "ReferringPhysicianName", "PerformingPhysicianName",
    "OperatorsName", "NameOfPhysiciansReadingStudy", "PhysiciansOfRecord", "StationName",
    "StudyID", "PatientAddress", "OtherPatientNames", "PatientMotherBirthName",
)  # fmt: skip
PHASES = (
    ("non-contrast", ("non contrast", "non-contrast", "noncontrast", "native", "plain", "nc ")),
    ("arterial", ("arterial", "arter", "art ")),
    ("portal-venous", ("portal", "venous", " pv", "pvp")),
    ("delayed", ("delayed", "delay", "late")),
)
_ALLOWED = re.compile(r"[^A-Za-z0-9 .,:;()+/_-]")
_MONTHS = r"(?:jan|feb|mar|apr|may|jun|jul|aug|sep|sept|oct|nov|dec)[a-z]*\.?"
# Any of these in a description means a technologist typed patient data into it: drop it all.
_DOUBT = re.compile(
    r"\d{1,4}\s*[./-]\s*\d{1,2}\s*[./-]\s*\d{1,4}"  # 01.01.70, 1/1/70, 1970-01-01
    r"|\d{5,}"  # 19700101, accession and record numbers
    rf"|\b{_MONTHS}\s*\d{{1,2}}\b|\b\d{{1,2}}\s*{_MONTHS}"  # Jan 1 1970, 1 Jan 1970
    r"|\b(?:dob|d\.o\.b|born|birth|geb|age|id|mrn|pid|acc|accession|name|pat|patient|"
    r"mr|mrs|dr)\b",  # labels of identifying values, honorifics
    re.IGNORECASE,
)
# Reconstruction kernels as scanners write them: Siemens B30f/Br40d/I30f (+ strength "3"),
# Toshiba/Canon FC03, Philips A/B/YA, GE's words.
_KERNEL = re.compile(r"[A-Z][A-Za-z]{0,2}\d{1,3}[a-z]?|[A-Z]{1,2}|\d{1,2}")
GE_KERNELS = frozenset(
    "STANDARD SOFT BONE BONEPLUS LUNG DETAIL CHEST EDGE ULTRA EXPERIMENTAL HD STND".split()
)


def salt(settings: Settings) -> bytes:
    """MEDSYNTH_DEID_SALT, else a value derived from the secret key (never stored)."""
    if settings.deid_salt:
        return settings.deid_salt.encode()
    return hmac.new(settings.secret_key.encode(), b"medsynth dicom deid v1", "sha256").digest()


def key(salt_bytes: bytes, kind: str, value: str | None) -> str | None:
    """Salted hash of an identifier; the kind is mixed in so a UID and an ID never collide."""
    if not value:
        return None
    return hmac.new(salt_bytes, f"{kind}:{value.strip()}".encode(), hashlib.sha256).hexdigest()


def identifiers(ds: Dataset) -> set[str]:
    """Every identifying string in a header: the listed fields, every person name (any PN
    element, nested too) and each name component of any length (`Wu^Li` gives `Wu`, `Li`)."""
    values: list[str] = []
    for keyword in IDENTIFYING:
        values += _strings(ds.get(keyword))
    for element in ds.iterall():
        if element.VR == "PN":
            values += _strings(element.value)
    found: set[str] = set()
    for text in values:
        found.add(text)
        found.update(p for p in re.split(r"[\^=\s,.]+", text) if p)
    return found


def _strings(value) -> list[str]:
    if value is None or value == "":
        return []
    values = list(value) if isinstance(value, MultiValue | list | tuple) else [value]
    return [t for t in (str(v).strip() for v in values) if t]


def scrub(text: str, secrets: set[str]) -> str:
    """`text` with every identifier replaced by '…' (case-insensitive), longest first.

    Values of 3+ characters are masked wherever they occur; shorter ones (name parts like
    `Li`) only as whole words, so that `liver` survives.
    """
    for s in sorted(secrets, key=len, reverse=True):
        pattern = re.escape(s)
        if len(s) < 3:
            pattern = rf"(?<![A-Za-z0-9]){pattern}(?![A-Za-z0-9])"
        text = re.sub(pattern, "…", text, flags=re.IGNORECASE)
    return text


def clean_description(raw: str | None, secrets: set[str]) -> str | None:
    """A series description fit to show, or None when in doubt.

    Technologists sometimes type a name, a birth date or a record number into it. Values of
    this header's identifying fields are masked; anything that looks like a date, a long
    number or a label of personal data (DOB, ID, MRN, name...) drops the whole description,
    since what follows such a label cannot be told from the protocol words.
    """
    if not raw:
        return None
    text = scrub(str(raw), secrets)
    text = _ALLOWED.sub(" ", text).replace("…", " ")
    if _DOUBT.search(text):
        return None
    text = re.sub(r"\s+", " ", text).strip(" .,:;-")
    return text[:64] or None


def clean_kernel(ds: Dataset, secrets: set[str] = frozenset()) -> str | None:
    """The reconstruction kernel when every value of it is a kernel name, else None."""
    values = _strings(ds.get("ConvolutionKernel"))
    lowered = {s.lower() for s in secrets}
    ok = values and all(
        (_KERNEL.fullmatch(v) or v.upper() in GE_KERNELS) and v.lower() not in lowered
        for v in values
    )
    return "\\".join(values) if ok else None


@dataclass(frozen=True)
class Acquisition:
    """The non-identifying acquisition facts kept with a volume."""

    modality: str | None
    kvp: float | None
    kernel: str | None
    contrast_phase: str | None


def acquisition(ds: Dataset, description: str | None) -> Acquisition:
    """Vocabulary facts only: the phase is read from the raw description (it becomes one of
    a few fixed words, so nothing of the text is kept), the kernel from its pattern."""
    try:
        kvp = float(ds.get("KVP")) if ds.get("KVP") not in (None, "") else None
    except (TypeError, ValueError):
        kvp = None
    modality = str(ds.get("Modality", "") or "")
    return Acquisition(
        modality=modality if re.fullmatch(r"[A-Z]{2,4}", modality) else None,
        kvp=kvp,
        kernel=clean_kernel(ds, identifiers(ds)),
        contrast_phase=_phase(ds, str(ds.get("SeriesDescription") or description or "")),
    )


def _phase(ds: Dataset, description: str | None) -> str | None:
    """A phase word from the description; 'contrast' if only an agent is named; else None."""
    text = f" {(description or '').lower()} "
    for phase, words in PHASES:
        if any(w in text for w in words):
            return phase
    return "contrast" if ds.get("ContrastBolusAgent") else None
