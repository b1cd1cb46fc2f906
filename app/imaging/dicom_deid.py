"""De-identification: what of a DICOM header may be kept, and salted keys for the rest.

Kept: pixel data and geometry (elsewhere), modality, kVp, reconstruction kernel, a contrast
phase word, and a series description scrubbed of identifiers. PatientID and the Study and
Series Instance UIDs are kept only as HMAC-SHA256 under a secret salt: stable within one
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
_LONG_NUMBER = re.compile(r"\d{4,}")
_ALLOWED = re.compile(r"[^A-Za-z0-9 .,:;()+/_-]")


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
    """Every identifying string in a header, and each of its name parts of 3+ characters."""
    found: set[str] = set()
    for keyword in IDENTIFYING:
        value = ds.get(keyword)
        if value is None or value == "":
            continue
        values = list(value) if isinstance(value, MultiValue | list | tuple) else [value]
        for v in values:
            text = str(v).strip()
            if len(text) < 3:  # too short to scrub without mangling every message
                continue
            found.add(text)
            found.update(p for p in re.split(r"[\^=\s,]+", text) if len(p) >= 3)
    return found


def scrub(text: str, secrets: set[str]) -> str:
    """`text` with every identifier replaced by '…' (case-insensitive), longest first."""
    for s in sorted(secrets, key=len, reverse=True):
        text = re.sub(re.escape(s), "…", text, flags=re.IGNORECASE)
    return text


def clean_description(raw: str | None, secrets: set[str]) -> str | None:
    """A series description fit to show: identifiers and 4+ digit numbers (dates, IDs) masked.

    Technologists sometimes type a name, an accession number or a date into it, so it is
    scrubbed of this header's identifying values, long numbers and unusual characters, and cut
    to 64 characters; an empty result is None.
    """
    if not raw:
        return None
    text = scrub(str(raw), secrets)
    text = _LONG_NUMBER.sub("#", _ALLOWED.sub(" ", text))
    text = re.sub(r"\s+", " ", text).strip(" .,:;-")
    return text[:64] or None


@dataclass(frozen=True)
class Acquisition:
    """The non-identifying acquisition facts kept with a volume."""

    modality: str | None
    kvp: float | None
    kernel: str | None
    contrast_phase: str | None


def acquisition(ds: Dataset, description: str | None) -> Acquisition:
    kernel = ds.get("ConvolutionKernel")
    if kernel is not None and not isinstance(kernel, str):
        kernel = "\\".join(str(k) for k in kernel)
    try:
        kvp = float(ds.get("KVP")) if ds.get("KVP") not in (None, "") else None
    except (TypeError, ValueError):
        kvp = None
    return Acquisition(
        modality=str(ds.get("Modality", "") or "")[:16] or None,
        kvp=kvp,
        kernel=_ALLOWED.sub("", str(kernel))[:64] if kernel else None,
        contrast_phase=_phase(ds, description),
    )


def _phase(ds: Dataset, description: str | None) -> str | None:
    """A phase word from the description; 'contrast' if only an agent is named; else None."""
    text = f" {(description or '').lower()} "
    for phase, words in PHASES:
        if any(w in text for w in words):
            return phase
    return "contrast" if ds.get("ContrastBolusAgent") else None
