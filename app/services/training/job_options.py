"""The "new training job" form: defaults, validation of every field, and the trainer's argv.

One validator serves the HTML form (strings) and the JSON API (typed values); it collects every
problem at once so the form can show each next to its field.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from app.errors import InvalidInput
from app.models import DatasetVersion, Snapshot
from app.trainer_client import calls, commands
from app.trainer_client.processes import Devices

FIELDS = (
    "dataset_id", "resolution", "kimg", "batch", "gamma", "aug", "target", "cond", "mirror",
    "snap", "seed", "tick", "cbase", "cmax", "zdim", "gpus", "resume_from", "metrics_every",
)  # fmt: skip
IGNORED = ("csrf_token",)
DEFAULT_KIMG = 1000.0
DEFAULT_SNAP = 50
DEFAULT_TARGET = 0.6
MAX_KIMG = 1_000_000.0


class JobOptionsInvalid(InvalidInput):
    """Every problem of a submitted form, by field; `detail` lists them all in one line."""

    def __init__(self, errors: dict[str, str]):
        super().__init__("; ".join(f"{k}: {v}" for k, v in errors.items()))
        self.errors = errors


def _python() -> str:
    return commands.python_for("")


def auto_batch(res: int, gpus: int = 1) -> int:
    """The trainer's "auto" batch for res² on `gpus` processes (`trainer info defaults`)."""
    return int(calls.defaults(_python(), res, gpus)["batch"])


def default_gamma(res: int, batch: int) -> float:
    """The trainer's default R1 weight for res² at this batch (`trainer info defaults`)."""
    return float(calls.defaults(_python(), res, 0, batch)["gamma"])


def form_defaults(dataset: DatasetVersion | None, devices: Devices) -> dict[str, Any]:
    """Values the empty form shows for a dataset (and the derived γ it explains)."""
    res = dataset.resolution if dataset else 256
    gpus = 1 if devices.cuda else 0
    batch = auto_batch(res, gpus)
    return {
        "dataset_id": dataset.id if dataset else None,
        "resolution": res, "kimg": DEFAULT_KIMG, "batch": batch,
        "gamma": default_gamma(res, batch), "aug": "ada", "target": DEFAULT_TARGET,
        "cond": False, "mirror": False, "snap": DEFAULT_SNAP, "seed": 0, "tick": None,
        "cbase": None, "cmax": None, "zdim": None, "gpus": gpus, "resume_from": None,
        "metrics_every": 0,
    }  # fmt: skip


def _blank(v: Any) -> bool:
    return v is None or (isinstance(v, str) and v.strip() == "")


def _num(raw: Mapping[str, Any], key: str, kind: type, errors: dict[str, str]) -> Any:
    v = raw.get(key)
    if _blank(v):
        return None
    if isinstance(v, bool):
        errors[key] = "must be a number, not true/false"
        return None
    try:
        out = kind(v.strip()) if isinstance(v, str) else kind(v)
    except (TypeError, ValueError):
        errors[key] = f"{v!r} is not {'a whole number' if kind is int else 'a number'}"
        return None
    if kind is int and not isinstance(v, str) and float(v) != out:
        errors[key] = f"{v!r} is not a whole number"
        return None
    if kind is float and not math.isfinite(out):
        errors[key] = "must be a finite number"
        return None
    return out


def _flag(raw: Mapping[str, Any], key: str, errors: dict[str, str]) -> bool:
    v = raw.get(key)
    if _blank(v) or v is False:
        return False
    if v is True:
        return True
    if isinstance(v, str) and v.lower() in ("1", "true", "on", "yes"):
        return True
    if isinstance(v, str) and v.lower() in ("0", "false", "off", "no"):
        return False
    errors[key] = f"must be true or false, not {v!r}"
    return False


def snapshot_network(snapshot: Snapshot) -> dict[str, Any]:
    """The network shape a snapshot was trained with: the trainer's options.json, else the job's."""
    job = snapshot.job
    net = calls.snapshot_network(_python(), snapshot.path, job.run_dir) or {}
    return {
        "resolution": int(net.get("resolution") or job.resolution),
        "channels": int(net.get("channels") or 1),
        "cbase": net.get("cbase") or job.options.get("cbase"),
        "cmax": net.get("cmax") or job.options.get("cmax"),
        "cond": bool(net.get("c_dim")) if net else bool(job.options.get("cond")),
    }


def _check_resume(session: Session, sid: int, opts: dict[str, Any], errors: dict[str, str]) -> None:
    snap = session.get(Snapshot, sid)
    if snap is None:
        errors["resume_from"] = f"snapshot {sid} does not exist"
        return
    if not Path(snap.path).is_file():
        errors["resume_from"] = f"snapshot {sid}'s file is missing ({snap.path})"
        return
    net = snapshot_network(snap)
    res = opts.get("resolution")
    if res and net["resolution"] != res:
        errors["resume_from"] = (
            f"snapshot {sid} was trained at {net['resolution']}×{net['resolution']}, "
            f"this job is {res}×{res}; fine-tuning needs the same resolution"
        )
    elif net["channels"] != 1:
        errors["resume_from"] = (
            f"snapshot {sid} makes {net['channels']}-channel images; the dataset is "
            "grayscale (1 channel)"
        )
    elif net["cond"] != opts.get("cond", False):
        errors["resume_from"] = (
            f"snapshot {sid} was trained {'with' if net['cond'] else 'without'} labels; "
            "set the conditioning option the same way"
        )
    for key, label in (("cbase", "channel base"), ("cmax", "channel max")):
        if net[key] is None:
            continue
        if opts.get(key) is None:
            opts[key] = int(net[key])  # fine-tuning inherits the model size
        elif opts[key] != int(net[key]):
            errors[key] = f"snapshot {sid} has {label} {net[key]}; fine-tuning keeps it"


def validate_job_options(
    session: Session, raw: Mapping[str, Any], devices: Devices
) -> tuple[DatasetVersion, dict[str, Any]]:
    """Check every field of the form; returns the dataset and the complete, typed options."""
    errors: dict[str, str] = {}
    unknown = sorted(set(raw) - set(FIELDS) - set(IGNORED))
    if unknown:
        errors["form"] = f"unknown field(s): {', '.join(unknown)}"
    dataset_id = _num(raw, "dataset_id", int, errors)
    dataset = session.get(DatasetVersion, dataset_id) if dataset_id is not None else None
    if dataset_id is None and "dataset_id" not in errors:
        errors["dataset_id"] = "choose a dataset version"
    elif dataset is None and "dataset_id" not in errors:
        errors["dataset_id"] = f"dataset version {dataset_id} does not exist"
    elif dataset is not None and not (dataset.zip_path and Path(dataset.zip_path).is_file()):
        errors["dataset_id"] = f"dataset version {dataset_id} has no exported zip; export it first"

    opts: dict[str, Any] = {"dataset_id": dataset_id}
    res = _num(raw, "resolution", int, errors)
    if res is None and "resolution" not in errors and dataset is not None:
        res = dataset.resolution
    if res is not None:
        if res < 8 or res > 4096 or res & (res - 1):
            errors["resolution"] = f"{res} is not a power of two between 8 and 4096"
        elif dataset is not None and res != dataset.resolution:
            errors["resolution"] = (
                f"the dataset's images are {dataset.resolution}×{dataset.resolution}; the "
                f"trainer cannot train {res}×{res} from it (export a version at {res})"
            )
    opts["resolution"] = res

    gpus = _num(raw, "gpus", int, errors)
    gpus = (1 if devices.cuda else 0) if gpus is None else gpus
    if gpus < 0:
        errors["gpus"] = "must be 0 (CPU) or more"
    elif gpus > devices.gpus:
        errors["gpus"] = f"{gpus} GPU(s) asked for, this machine has {devices.gpus}" + (
            " (jobs run on the CPU)" if not devices.cuda else ""
        )
    opts["gpus"] = gpus

    kimg = _num(raw, "kimg", float, errors)
    kimg = DEFAULT_KIMG if kimg is None and "kimg" not in errors else kimg
    if kimg is not None and not 0 < kimg <= MAX_KIMG:
        errors["kimg"] = f"must be > 0 and at most {MAX_KIMG:g} (thousands of images shown)"
    opts["kimg"] = kimg

    batch = _num(raw, "batch", int, errors)
    if batch is None and "batch" not in errors:
        batch = auto_batch(res if res and "resolution" not in errors else 256, gpus)
    if batch is not None:
        if batch < 1 or batch > 4096:
            errors["batch"] = "must be between 1 and 4096"
        elif gpus > 1 and batch % gpus:
            errors["batch"] = f"{batch} is not divisible by the {gpus} GPUs it runs on"
    opts["batch"] = batch

    gamma = _num(raw, "gamma", float, errors)
    if gamma is None and "gamma" not in errors and res and "resolution" not in errors and batch:
        gamma = default_gamma(res, batch)
    if gamma is not None and gamma < 0:
        errors["gamma"] = "R1 γ must be ≥ 0"
    opts["gamma"] = gamma

    aug = raw.get("aug") or "ada"
    if aug not in ("ada", "noaug"):
        errors["aug"] = f"must be 'ada' or 'noaug', not {aug!r}"
    opts["aug"] = aug
    target = _num(raw, "target", float, errors)
    target = DEFAULT_TARGET if target is None else target
    if aug == "ada" and not 0 < target < 1:
        errors["target"] = "the ADA target must be between 0 and 1 (exclusive)"
    opts["target"] = target

    opts["cond"] = _flag(raw, "cond", errors)
    if opts["cond"] and dataset is not None:
        if dataset.num_tumour <= 0 or dataset.num_tumour >= dataset.num_images:
            kind = "normal" if dataset.num_tumour <= 0 else "tumour"
            errors["cond"] = f"conditioning needs normal and tumour images; all are {kind}"
    opts["mirror"] = _flag(raw, "mirror", errors)

    ranges = (
        ("snap", DEFAULT_SNAP, 1, 100_000),
        ("seed", 0, 0, 2**31 - 1),
        ("metrics_every", 0, 0, 100_000),
    )  # FID/KID every N snapshots; 0 = off
    for key, default, lo, hi in ranges:
        v = _num(raw, key, int, errors)
        v = default if v is None else v
        if not lo <= v <= hi:
            errors[key] = f"must be between {lo} and {hi}"
        opts[key] = v

    tick = _num(raw, "tick", float, errors)
    if tick is not None and not 0 < tick <= 10_000:
        errors["tick"] = "kimg per tick must be > 0"
    opts["tick"] = tick
    for key in ("cbase", "cmax", "zdim"):
        v = _num(raw, key, int, errors)
        if v is not None and v < 1:
            errors[key] = "must be ≥ 1"
        opts[key] = v
    if opts["cbase"] and res and opts["cbase"] < res and "cbase" not in errors:
        errors["cbase"] = f"must be at least the resolution ({res}) or the last layers are empty"

    sid = _num(raw, "resume_from", int, errors)
    opts["resume_from"] = sid
    if sid is not None:
        _check_resume(session, sid, opts, errors)
    if errors:
        raise JobOptionsInvalid(errors)
    assert dataset is not None
    opts["data"] = str(Path(dataset.zip_path).resolve())
    return dataset, opts
