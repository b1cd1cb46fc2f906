"""The "new training job" form: the model (app/schemas/jobs.py) plus the checks only the
database and the machine can answer, and the defaults the trainer reports for a resolution.

Every problem is collected at once so the form can show each next to its field.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.errors import InvalidInput
from app.models import DatasetVersion, Snapshot, User
from app.schemas.jobs import BOUNDS, JobOptionsIn, parse_job_options
from app.trainer_client import calls, commands
from app.trainer_client.processes import Devices

__all__ = ["Devices", "JobOptionsInvalid", "form_defaults", "validate_job_options"]
DEFAULT_KIMG = 1000.0
DEFAULT_SNAP = 50
DEFAULT_TARGET = 0.6
DEFAULT_KEEP = 5
MAX_KIMG = BOUNDS["kimg"][1]
CPU_PRESET = {"cbase": 2048, "cmax": 128, "zdim": 128}  # a few M parameters: minutes on a CPU


class JobOptionsInvalid(InvalidInput):
    """Every problem of a submitted form, by field; `detail` lists them all in one line."""

    def __init__(self, errors: dict[str, str]):
        super().__init__("; ".join(f"{k}: {v}" for k, v in errors.items()))
        self.errors = errors


def _python() -> str:
    return commands.python_for("")


def trainer_defaults(
    res: int, gpus: int = 0, batch: int | None = None, **net: int | None
) -> dict[str, Any]:
    """What the trainer would use for a fresh run at res² (`trainer info defaults`); `net`
    (cbase, cmax, zdim) only changes the MAC count of the answer."""
    return calls.defaults(_python(), res, gpus, batch, net.get("cbase"), net.get("cmax"),
                          net.get("zdim"))  # fmt: skip


def form_defaults(dataset: DatasetVersion | None, devices: Devices) -> dict[str, Any]:
    """Values the empty form shows for a dataset (and the derived γ and channels it explains)."""
    res = dataset.resolution if dataset else 256
    gpus = 1 if devices.cuda else 0
    d = trainer_defaults(res, gpus)
    return {
        "dataset_id": dataset.id if dataset else None,
        "resolution": res, "kimg": None, "batch": d["batch"], "gamma": d["gamma"],
        "aug": "ada", "augpipe": d.get("augpipe") or "bgc", "target": DEFAULT_TARGET,
        "cond": False, "mirror": False, "snap": None, "seed": 0, "tick": None,
        "cbase": None, "cmax": None, "zdim": None, "gpus": gpus, "resume_from": None,
        "metrics_every": 0, "keep_snapshots": DEFAULT_KEEP, "keep_best_fid": True,
        "preset": "auto" if devices.cuda else "cpu",
        "auto_cbase": d["cbase"], "auto_cmax": d["cmax"], "auto_zdim": d["zdim"],
        "auto_tick": d["tick"], "cpu_preset": CPU_PRESET,
        "augpipes": d.get("augpipes") or ["bgc"],
        "precision": None, "bf16_res": d.get("bf16_res"), "cpu_bf16": d.get("cpu_bf16"),
    }  # fmt: skip


def default_dataset(session: Session, datasets: list[DatasetVersion]) -> DatasetVersion | None:
    """The version a new job starts from: the newest training part of a split or the newest
    made by an admin; any reviewer's quick freeze only when there is nothing else."""
    admins = set(session.scalars(select(User.id).where(User.role == "admin")))
    trainable = [d for d in datasets if d.split not in ("val", "test")]  # held-out parts last
    curated = [d for d in trainable if d.split == "train" or d.created_by_id in admins]
    return (curated or trainable or datasets or [None])[0]


def form_choices(
    session: Session,
    devices: Devices,
    values: dict[str, Any] | None = None,
    errors: dict[str, str] | None = None,
    preset_changed: bool = False,
) -> dict[str, Any]:
    """Everything the "new job" form shows: datasets, the chosen one's defaults, the values
    (a preset fills the channel fields), fine-tuning sources, errors."""
    datasets = list(session.scalars(select(DatasetVersion).order_by(DatasetVersion.id.desc())))
    chosen = None
    if values and values.get("dataset_id"):
        chosen = next((d for d in datasets if str(d.id) == str(values["dataset_id"])), None)
    chosen = chosen or default_dataset(session, datasets)
    defaults = form_defaults(chosen, devices)
    form = {**defaults, **{k: v for k, v in (values or {}).items() if v not in (None, "")}}
    for key in ("cbase", "cmax", "zdim"):
        # a changed preset sets its sizes; a re-fill (other dataset) keeps what was typed and
        # shows the preset's size where the field is empty, as a submit would use it
        if preset_changed or values is None or form.get(key) in (None, ""):
            form[key] = CPU_PRESET[key] if form.get("preset") == "cpu" else None
    snaps = session.scalars(select(Snapshot).order_by(Snapshot.id.desc()).limit(200)).all()
    return {
        "datasets": datasets, "dataset": chosen, "form": form, "defaults": defaults,
        "errors": errors or {}, "devices": devices,
        "resume_snapshots": [s for s in snaps if chosen and s.job.resolution == chosen.resolution],
    }  # fmt: skip


def snapshot_network(snapshot: Snapshot) -> dict[str, Any]:
    """The network a snapshot holds (the trainer's answer, else the run's options.json)."""
    job = snapshot.job
    net = calls.snapshot_network(_python(), snapshot.path, job.run_dir) or {}
    return {
        "resolution": int(net.get("resolution") or job.resolution),
        "channels": int(net.get("channels") or 1),
        "cbase": net.get("cbase") or job.options.get("cbase"),
        "cmax": net.get("cmax") or job.options.get("cmax"),
        "zdim": net.get("zdim") or job.options.get("zdim"),
        "cond": bool(net.get("c_dim")) if net else bool(job.options.get("cond")),
    }


def _check_resume(session: Session, sid: int, opts: dict[str, Any], errors: dict[str, str]) -> None:
    snap = session.get(Snapshot, sid)
    if snap is None:
        errors["resume_from"] = f"snapshot {sid} does not exist"
        return
    if not Path(snap.path).is_file():
        errors["resume_from"] = f"snapshot {sid}'s file is missing"
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
    for key, label in (("cbase", "channel base"), ("cmax", "channel max"), ("zdim", "latent size")):
        if net[key] is None:
            continue
        if opts.get(key) is None:
            opts[key] = int(net[key])  # fine-tuning inherits the model size
        elif opts[key] != int(net[key]):
            errors[key] = f"snapshot {sid} has {label} {net[key]}; fine-tuning keeps it"


def _dataset(session: Session, m: JobOptionsIn, errors: dict[str, str]) -> DatasetVersion | None:
    if m.dataset_id is None:
        errors["dataset_id"] = "choose a dataset version"
        return None
    dataset = session.get(DatasetVersion, m.dataset_id)
    if dataset is None:
        errors["dataset_id"] = f"dataset version {m.dataset_id} does not exist"
    elif not (dataset.zip_path and Path(dataset.zip_path).is_file()):
        errors["dataset_id"] = (
            f"dataset version {m.dataset_id} has no exported zip; export it first"
        )
    return dataset


def _machine_checks(
    m: JobOptionsIn, dataset: DatasetVersion | None, devices: Devices, errors: dict[str, str]
) -> tuple[int | None, int]:
    """Resolution against the dataset, GPUs against the machine, batch against the GPUs."""
    res = m.resolution if m.resolution is not None else (dataset.resolution if dataset else None)
    if res is not None and res & (res - 1):
        errors["resolution"] = f"{res} is not a power of two between 8 and 4096"
    elif res is not None and dataset is not None and res != dataset.resolution:
        errors["resolution"] = (
            f"the dataset's images are {dataset.resolution}×{dataset.resolution}; the "
            f"trainer cannot train {res}×{res} from it (export a version at {res})"
        )
    gpus = (devices.default_gpus if devices.cuda else 0) if m.gpus is None else m.gpus
    if gpus > devices.gpus:
        errors["gpus"] = f"{gpus} GPU(s) asked for, {devices.where} has {devices.gpus}" + (
            " (jobs run on the CPU)" if not devices.cuda else ""
        )
    nodes = m.nodes or 1
    if (nodes > 1 or m.time_limit_min) and not devices.cluster:
        field = "nodes" if nodes > 1 else "time_limit_min"
        errors[field] = "only for a cluster (MEDSYNTH_EXECUTOR=slurm); this server runs jobs itself"
    procs = max(gpus, 1) * nodes
    if m.batch is not None and procs > 1 and m.batch % procs:
        per = f" ({gpus} per node × {nodes} nodes)" if nodes > 1 else ""
        errors["batch"] = f"{m.batch} is not divisible by the {procs} GPUs it runs on{per}"
    if m.cond and dataset is not None and not 0 < dataset.num_tumour < dataset.num_images:
        kind = "normal" if dataset.num_tumour <= 0 else "tumour"
        errors["cond"] = f"conditioning needs normal and tumour images; all are {kind}"
    return (None if "resolution" in errors else res), gpus


def _complete(m: JobOptionsIn, res: int | None, gpus: int) -> dict[str, Any]:
    """The typed options with every default filled in (batch and γ from the trainer)."""
    opts = m.model_dump()
    preset = CPU_PRESET if m.preset == "cpu" else {}
    for key, value in preset.items():
        opts[key] = value if opts[key] is None else opts[key]
    opts.update(resolution=res, gpus=gpus)
    opts["kimg"] = DEFAULT_KIMG if m.kimg is None else m.kimg
    if res is not None:  # one question to the trainer: batch, γ and this network's size
        net = {k: opts[k] for k in ("cbase", "cmax", "zdim")}
        d = trainer_defaults(res, gpus, opts["batch"], **net)
        opts["batch"] = d["batch"] if opts["batch"] is None else opts["batch"]
        opts["gamma"] = d["gamma"] if opts["gamma"] is None else opts["gamma"]
    for key, default in (("aug", "ada"), ("target", DEFAULT_TARGET), ("snap", DEFAULT_SNAP),
                         ("seed", 0), ("metrics_every", 0), ("keep_snapshots", DEFAULT_KEEP),
                         ("preset", "auto")):  # fmt: skip
        opts[key] = default if opts[key] is None else opts[key]
    if opts["augpipe"] is None and opts["aug"] != "noaug":
        opts["augpipe"] = "bgc"
    return opts


def validate_job_options(
    session: Session, raw: dict[str, Any], devices: Devices
) -> tuple[DatasetVersion, dict[str, Any]]:
    """Check every field of the form; returns the dataset and the complete, typed options."""
    model, errors = parse_job_options(dict(raw))
    if model is None:
        known = {k: v for k, v in raw.items() if k in JobOptionsIn.model_fields and k not in errors}
        model, _ = parse_job_options(known)  # still name the database problems of the rest
    dataset = _dataset(session, model, errors) if model else None
    if model is None:
        raise JobOptionsInvalid(errors)
    res, gpus = _machine_checks(model, dataset, devices, errors)
    opts = _complete(model, res, gpus)
    if opts["cbase"] and res and opts["cbase"] < res and "cbase" not in errors:
        errors["cbase"] = f"must be at least the resolution ({res}) or the last layers are empty"
    if model.resume_from is not None:
        _check_resume(session, model.resume_from, opts, errors)
    if errors:
        raise JobOptionsInvalid(errors)
    assert dataset is not None and dataset.zip_path
    opts["data"] = str(Path(dataset.zip_path).resolve())
    return dataset, opts
