"""Ingest DICOM CT (a folder, or a zip from a PACS export), de-identified, one volume per series.

Flow: unpack (zip checked whole first) → read headers → group by SeriesInstanceUID → order and
check each series → decode pixels to HU into a scratch file → the same cache writers as NIfTI.
A series that cannot be used is skipped with the file and the reason when another series in
the upload is usable; when none is, the upload is refused (409 when all were duplicates).
All volumes of one upload are committed together; any unexpected failure removes every file
this ingest created. Nothing identifying is stored or returned (see app/imaging/dicom_deid).
"""

from __future__ import annotations

import shutil
import uuid
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from sqlalchemy.orm import Session

from app.errors import Conflict, DomainError, InvalidInput, InvalidVolume
from app.imaging import dicom_deid as deid
from app.imaging.dicom_geometry import Plan, plan_series, read_volume, to_hu
from app.imaging.dicom_masks import mask_for
from app.imaging.dicom_read import Scan, Series, scan
from app.imaging.dicom_zip import extract_dicom, is_zip
from app.imaging.nifti import check_same_grid, nifti_stem, open_nifti
from app.models import User, Volume
from app.services.curation.ingest_plan import is_dicom_file
from app.services.curation.volume_cache import (
    build_volume,
    duplicate_message,
    find_duplicate,
    ingest_audit,
    storage_error,
)
from app.services.curation.volumes import stored_path, volume_out
from app.settings import Settings

NOT_KEPT = "(not kept)"  # source_path of a volume whose DICOM originals were not kept
MAX_LISTED = 100


@dataclass
class DicomIngest:
    volumes: list[Volume] = field(default_factory=list)
    skipped: list[dict] = field(default_factory=list)  # {"file", "reason"[, "existing_volume_id"]}
    non_dicom: int = 0
    refused: list[dict] = field(default_factory=list)  # the series among `skipped`

    def refuse(self, entry: dict) -> None:
        self.skipped.append(entry)
        self.refused.append(entry)


def ingest_dicom(
    session: Session,
    settings: Settings,
    source: Path,
    mask: Path | None = None,
    user: User | None = None,
    *,
    name: str = "the upload",
    mask_name: str = "the mask",
    mask_structure: str | None = None,
) -> DicomIngest:
    """Ingest every usable CT series in a folder or zip (and an optional mask) and commit;
    `mask_structure` (liver | tumour) names a mask zip's one series whose name says neither."""
    work = settings.tmp_dir / f"dicom-{uuid.uuid4().hex}"
    created: list[Path] = []
    done = DicomIngest()
    found: Scan | None = None
    try:
        found = _scan_source(settings, source, work / "in", name, done)
        usable = _plans(found, done)
        if mask is not None and len(usable) != 1:
            raise InvalidInput(f"a mask needs exactly one CT series in {name}; found {len(usable)}")
        salt = deid.salt(settings)
        mask_of = (mask, mask_name, mask_structure)
        for n, (series, plan) in enumerate(usable):
            _one_series(session, settings, series, plan, found, salt, mask_of,
                        work / f"s{n}", created, done)  # fmt: skip
        if not done.volumes:
            raise _nothing_usable(done, name)
        source_path = _keep_original(settings, source, created)
        for volume in done.volumes:
            volume.source_path = source_path
            volume.created_by_id = user.id if user else None
            session.add(volume)
        session.flush()
        for volume in done.volumes:
            session.add(ingest_audit(volume, user))
        session.commit()
        done.skipped = [_scrubbed(s, found.secrets) for s in done.skipped]
        return done
    except BaseException as exc:
        session.rollback()
        for p in reversed(created):
            shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)
        if isinstance(exc, DomainError) and found is not None:
            exc.detail = deid.scrub(exc.detail, found.secrets)
            exc.args = (exc.detail,)
        if isinstance(exc, OSError):
            raise storage_error(exc, name) from exc
        raise
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _scan_source(
    settings: Settings, source: Path, dest: Path, name: str, done: DicomIngest
) -> Scan:
    """DICOM files of a zip (unpacked flat) or a folder, read and grouped; counts non-DICOM."""
    if source.is_file() and is_zip(source):
        out = extract_dicom(source, dest, settings.max_decompressed_bytes, name)
        files, non_dicom = out.files, out.non_dicom
    elif source.is_dir():
        files, non_dicom = [], []
        for f in sorted(p for p in source.rglob("*") if p.is_file() and not p.is_symlink()):
            shown = str(f.relative_to(source))
            (files if is_dicom_file(f) else non_dicom).append((shown, f))
        non_dicom = [s for s, _ in non_dicom]
    elif source.is_file() and is_dicom_file(source):
        files, non_dicom = [(source.name, source)], []
    else:
        raise InvalidVolume(
            f"{name}: only .nii and .nii.gz files, a .zip of a DICOM folder, or DICOM files "
            "are accepted"
        )
    found = scan(files)
    done.non_dicom = len(non_dicom)
    done.skipped += [{"file": m, "reason": "not a DICOM file"} for m in non_dicom[:MAX_LISTED]]
    done.skipped += found.skipped
    return found


def _plans(found: Scan, done: DicomIngest) -> list[tuple[Series, Plan]]:
    usable = []
    for series in found.series.values():
        if not series.frames and series.refusal is None:
            continue  # only localizers, each already listed as skipped
        try:
            usable.append((series, plan_series(series)))
        except InvalidVolume as exc:
            named = (f.file for f in series.frames if f.file in exc.detail)
            shown = next(named, series.frames[0].file if series.frames else "a series")
            done.refuse({"file": shown, "reason": exc.detail})
    if found.segs:
        done.skipped += [{"file": s, "reason": "a DICOM SEG: send it in the mask field"}
                         for s, _ in found.segs]  # fmt: skip
    return usable


def _one_series(session, settings, series, plan, found, salt, mask, work, created, done) -> None:
    """Convert one series into cache files and an unsaved Volume; a refusal only skips it."""
    ds = series.header
    series_key = deid.key(salt, "series", series.uid)
    existing = find_duplicate(session, None, None, series_key)
    if existing is not None:
        _skip_duplicate(done, plan, existing)
        return
    mine: list[Path] = []
    work.mkdir(parents=True, exist_ok=True)
    try:
        with ExitStack() as stack:
            src = read_volume(plan, work / "hu.npy", "series", to_hu)
            mask_src = _mask(stack, settings, mask, src, plan, work, done) if mask[0] else None
            volume = build_volume(settings, src, mask_src, mine, "the series")
        existing = find_duplicate(session, None, volume.content_sha256, None)
        if existing is None:
            existing = next(
                (v for v in done.volumes if v.content_sha256 == volume.content_sha256), None
            )
        if existing is not None:
            raise Conflict(duplicate_message("the series", existing))
    except DomainError as exc:
        for p in reversed(mine):
            p.unlink(missing_ok=True)
        if mask[0] is not None:
            raise  # with a mask there is one series: its refusal is the answer
        done.refuse({"file": plan.frames[0].file, "reason": exc.detail})
        return
    except BaseException:
        created += mine  # removed by the caller with everything else
        raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
    created += mine
    _describe(volume, ds, series, plan, salt, found.secrets, series_key)
    done.volumes.append(volume)


def _skip_duplicate(done: DicomIngest, plan: Plan, existing: Volume) -> None:
    done.refuse({
        "file": plan.frames[0].file,
        "reason": duplicate_message("this series", existing),
        "existing_volume_id": existing.id,
    })  # fmt: skip


def _mask(stack, settings, mask, src, plan, work, done):
    """The mask source on the series' grid: a NIfTI file, or DICOM structures / SEG."""
    path, shown, structure = mask
    shown = shown if shown and nifti_stem(shown) else path.name if nifti_stem(path.name) else shown
    if path.is_file() and nifti_stem(shown or ""):
        m = stack.enter_context(
            open_nifti(path, settings.tmp_dir, shown, settings.max_decompressed_bytes)
        )
        check_same_grid(src, m)
        return m
    mask_scan = _scan_mask(settings, path, work / "mask", shown)
    return mask_for(mask_scan, src, plan, work, done.skipped, structure)


def _scan_mask(settings: Settings, path: Path, dest: Path, shown: str) -> Scan:
    if path.is_file() and is_zip(path):
        files = extract_dicom(path, dest, settings.max_decompressed_bytes, shown).files
    elif path.is_dir():
        files = [(str(f.relative_to(path)), f) for f in sorted(path.rglob("*"))
                 if f.is_file() and is_dicom_file(f)]  # fmt: skip
    elif path.is_file() and is_dicom_file(path):
        files = [(path.name, path)]
    else:
        raise InvalidInput(f"{shown}: a mask is a .nii/.nii.gz, a DICOM SEG, or a zip of DICOM")
    return scan(files, ct_only=False)


def _describe(volume, ds, series, plan, salt, secrets, series_key) -> None:
    """The de-identified facts of the series; nothing else of the header is kept."""
    description = deid.clean_description(ds.get("SeriesDescription"), secrets)
    facts = deid.acquisition(ds, description)
    volume.name = f"dicom-{series_key[:10]}"
    volume.source_format = "dicom-enhanced" if series.enhanced else "dicom"
    volume.source_sha256 = volume.content_sha256
    volume.patient_key = deid.key(salt, "patient", ds.get("PatientID"))
    volume.study_key = deid.key(salt, "study", ds.get("StudyInstanceUID"))
    volume.series_key = series_key
    volume.series_description = description
    volume.modality, volume.kvp = facts.modality, facts.kvp
    volume.kernel, volume.contrast_phase = facts.kernel, facts.contrast_phase
    volume.dicom_origin = [round(float(v), 3) for v in np.asarray(plan.frames[0].position)]


def _keep_original(settings: Settings, source: Path, created: list[Path]) -> str:
    """Copy the upload into uploads/ only when MEDSYNTH_KEEP_DICOM_ORIGINALS says so."""
    if not settings.keep_dicom_originals:
        return NOT_KEPT
    folder = settings.uploads_dir / uuid.uuid4().hex
    created.append(folder)
    if source.is_dir():
        shutil.copytree(source, folder / "original", symlinks=True)
        return stored_path(settings, folder / "original")
    folder.mkdir(parents=True)
    shutil.copyfile(source, folder / "original.zip")
    return stored_path(settings, folder / "original.zip")


def _nothing_usable(done: DicomIngest, name: str) -> DomainError:
    reasons = done.refused or [s for s in done.skipped if s["reason"] != "not a DICOM file"]
    if done.refused and all("existing_volume_id" in s for s in done.refused):
        return Conflict(f"{name}: {reasons[0]['reason']}")
    listed = "; ".join(f"{s['file']}: {s['reason']}" if s["file"] not in s["reason"] else
                       s["reason"] for s in reasons[:5])  # fmt: skip
    if not reasons:
        listed = f"no DICOM image in it ({done.non_dicom} other files skipped)"
    return InvalidVolume(f"{name}: no usable CT series ({listed})")


def _scrubbed(entry: dict, secrets: set[str]) -> dict:
    return {k: deid.scrub(v, secrets) if isinstance(v, str) else v for k, v in entry.items()}


def result_lines(path: str, done: DicomIngest) -> list[dict]:
    """One JSON-ready dict per volume, then one per skipped file or series (CLI output)."""
    lines = [{"path": path, **volume_out(v)} for v in done.volumes]
    lines += [{"path": path, "skipped": s["file"], "reason": s["reason"]} for s in done.skipped]
    return lines


def upload_out(done: DicomIngest) -> dict:
    return {
        "volumes": [volume_out(v) for v in done.volumes],
        "skipped": done.skipped,
        "non_dicom_skipped": done.non_dicom,
    }
