"""Published StyleGAN2-ADA checkpoints (.pkl) as snapshots jobs can fine-tune from.

The trainer reads the pickle with a restricted unpickler (`python -m trainer import-pkl`): no
code from the file runs. The result is kept as a job in state "imported" with one snapshot, so
the job form's "fine-tune from" lists it like any other snapshot; it never trains itself.
"""

from __future__ import annotations

import secrets
import shutil
from pathlib import Path
from typing import BinaryIO

from sqlalchemy.orm import Session

from app.errors import InvalidInput, NotFound, PayloadTooLarge
from app.models import AuditEvent, DatasetVersion, Job, Snapshot, User
from app.services import limits
from app.settings import Settings
from app.trainer_client import calls, commands

MAX_PKL_BYTES = 2 * 1024**3  # the largest published 1024² checkpoints are ~380 MB
CHUNK = 1024**2


def _receive(src: BinaryIO, dest: Path) -> int:
    """Copy the upload to `dest`, refusing it past MAX_PKL_BYTES; the bytes written."""
    n = 0
    with open(dest, "wb") as out:
        while chunk := src.read(CHUNK):
            n += len(chunk)
            if n > MAX_PKL_BYTES:
                raise PayloadTooLarge(f"the checkpoint is larger than {MAX_PKL_BYTES >> 30} GiB")
            out.write(chunk)
    if n == 0:
        raise InvalidInput("file: the upload is empty")
    return n


def import_pkl(
    session: Session,
    settings: Settings,
    src: BinaryIO,
    filename: str,
    dataset_id: int,
    user: User,
) -> Snapshot:
    """Import an uploaded .pkl for fine-tuning on `dataset_id`; its own unit of work."""
    dataset = session.get(DatasetVersion, dataset_id)
    if dataset is None:
        raise NotFound(f"dataset version {dataset_id} does not exist")
    if not filename.lower().endswith(".pkl"):
        raise InvalidInput("file: choose a StyleGAN2-ADA checkpoint (.pkl)")
    folder = settings.runs_dir / f"import-{secrets.token_hex(8)}"
    folder.mkdir(parents=True)
    try:
        upload = folder / "upload.pkl"
        _receive(src, upload)
        python = commands.python_for(settings.python_executable)
        out = folder / "snapshot-000000.pt"
        try:  # the shared bounded queue of checkpoint imports, a place per user
            with limits.shared_queue("checkpoint import", settings).place(user.id):
                facts = calls.import_pkl(python, upload, out, channels=1)
        except calls.TrainerCallFailed as exc:
            raise InvalidInput(f"file: {exc}") from exc
        finally:
            upload.unlink(missing_ok=True)
        return _record(session, dataset, user, folder, out, facts, Path(filename).name)
    except BaseException:
        session.rollback()
        shutil.rmtree(folder, ignore_errors=True)
        raise


def _record(
    session: Session, dataset: DatasetVersion, user: User, folder: Path, out: Path,
    facts: dict, name: str,
) -> Snapshot:  # fmt: skip
    net = facts["network"]
    job = Job(
        dataset_id=dataset.id, state="imported", run_dir=str(folder), resolution=net["resolution"],
        total_kimg=0.0, kimg=0.0, created_by_id=user.id,
        options={"imported_from": name, "cond": bool(net["c_dim"]), "c_dim": net["c_dim"],
                 "cbase": net["cbase"],
                 "cmax": net["cmax"], "zdim": net["zdim"]},
    )  # fmt: skip
    snap = Snapshot(kimg=0, nimg=0, path=str(out), size_bytes=out.stat().st_size)
    job.snapshots.append(snap)
    session.add(job)
    session.flush()
    detail = {"file": name, "resolution": net["resolution"], "c_dim": net["c_dim"]}
    session.add(AuditEvent(user_id=user.id, action="snapshot.import", target=f"job:{job.id}",
                           detail=detail))  # fmt: skip
    session.commit()
    return snap
