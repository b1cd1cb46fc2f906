"""How long a job will take, before it starts: the trainer's multiply-accumulates per image
(`trainer info defaults`) over this machine's measured throughput.

The cost of one training image is about 4 generator and 9 discriminator passes' worth of
MACs (G main, D on real and fake, their backward passes, the lazy R1 and path-length terms).
The default figures: 70 GMAC/s on 2 CPU threads (the speed bench: 890 s/kimg at 32², 1770
s/kimg at 64² with the auto network; the CPU preset at 16² measured 33-38 s/kimg against 39
estimated) plus a fixed cost per minibatch, or a conservative GPU figure. They are scaled by
the median measured/predicted ratio of recent jobs on the same kind of device.
"""

from __future__ import annotations

import os
import statistics
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.models import Job
from app.schemas.jobs import KIMG_REQUIRED
from app.services.training import speed
from app.services.training.job_options import (
    JobOptionsInvalid,
    trainer_defaults,
    validate_job_options,
)
from app.trainer_client import calls
from app.trainer_client.processes import Devices

CPU_MACS_PER_S = 35e9 * max(1, min(os.cpu_count() or 2, 64))  # 70 GMAC/s on 2 threads
GPU_MACS_PER_S = 30e12
STEP_OVERHEAD_S = {"cpu": 0.25, "cuda": 0.03}  # Python and kernel launches per minibatch
START_S = 15.0  # imports, dataset decode, first sample grid
DAY_S = 86400.0  # a longer job needs confirm_long
# CPU mixed precision ("precision": "bf16") over fp32 on AMX (`info defaults` "cpu_bf16"):
# bench/trainer_speed.py --bf16 ran 2.4x faster with the paper's network at 32² and 64²; the
# CPU preset (small layers, less of the step in convolutions) trained 1.5x faster at 64².
AMX_SPEEDUP = {"auto": 2.4, "cpu": 1.5}


def macs_per_image(opts: dict[str, Any]) -> float:
    """Training MACs per real image shown, for the job's network (counted by the trainer)."""
    net = {k: opts.get(k) for k in ("cbase", "cmax", "zdim")}
    gpus, batch = int(opts.get("gpus") or 0), opts.get("batch")
    m = trainer_defaults(int(opts["resolution"]), gpus, batch, **net)
    return 4.0 * m["macs_per_image"]["G"] + 9.0 * m["macs_per_image"]["D"]


def _base_sec_per_kimg(opts: dict[str, Any]) -> float:
    """Seconds per kimg from the network's MACs and the default device figures."""
    kind = "cuda" if opts.get("gpus") else "cpu"
    rate = (GPU_MACS_PER_S if kind == "cuda" else CPU_MACS_PER_S) * max(
        int(opts.get("gpus") or 1), 1
    )
    if kind == "cpu" and opts.get("precision") == "bf16":
        units = trainer_defaults(int(opts["resolution"])).get("cpu_bf16")
        amx = AMX_SPEEDUP["cpu" if opts.get("preset") == "cpu" else "auto"]
        rate *= {"amx": amx, "avx512_bf16": 1.0}.get(units or "", 0.5)  # emulated: slower
    steps = 1000 / max(int(opts["batch"]), 1)
    return 1000 * macs_per_image(opts) / rate + steps * STEP_OVERHEAD_S[kind]


def _measured_ratio(session: Session, kind: str) -> float:
    return _calibration(session, kind)[0]


def _calibration(session: Session, kind: str) -> tuple[float, int]:
    """How much slower (or faster) than the default figures recent jobs on this kind of device
    really ran: the median of measured / predicted (1 without any), and how many jobs say so."""
    jobs = session.scalars(
        select(Job).where(Job.sec_per_kimg.is_not(None)).order_by(Job.id.desc()).limit(20)
    )
    ratios = []
    for job in jobs:
        if (job.device or "cpu").startswith("cuda") != (kind == "cuda") or not job.options:
            continue
        try:
            ratios.append(job.sec_per_kimg / _base_sec_per_kimg(job.options))
        except (KeyError, TypeError, ValueError, ZeroDivisionError, calls.TrainerCallFailed):
            continue
    return (statistics.median(ratios) if ratios else 1.0), len(ratios)


def sec_per_kimg(session: Session, opts: dict[str, Any]) -> float:
    """This network's speed measured on this machine (speed.py) when it was, else the MAC
    count scaled by the figures above and the calibration of earlier jobs."""
    probe = speed.cached(session, opts)
    if probe is not None:
        return probe.sec_per_kimg
    kind = "cuda" if opts.get("gpus") else "cpu"
    return _base_sec_per_kimg(opts) * _measured_ratio(session, kind)


def seconds(session: Session, opts: dict[str, Any]) -> float:
    """The whole job: start-up plus kimg at the estimated speed."""
    return START_S + float(opts["kimg"]) * sec_per_kimg(session, opts)


def first_step_s(session: Session, opts: dict[str, Any]) -> float:
    """When the first per-step progress should show (start-up plus one minibatch)."""
    return START_S + sec_per_kimg(session, opts) * int(opts["batch"]) / 1000


def for_form(
    session: Session, raw: dict[str, Any], devices: Devices, measure: bool = False
) -> dict[str, Any]:
    """The estimate for submitted form values (no job is created); `measure` first measures
    this network on this machine when that was not done yet (seconds to a minute)."""
    blank = {"kimg": KIMG_REQUIRED} if str(raw.get("kimg") or "").strip() == "" else {}
    try:
        _, opts = validate_job_options(session, raw, devices)
    except JobOptionsInvalid as exc:
        return {"ok": False, "errors": {**blank, **exc.errors}}
    if blank:
        return {"ok": False, "errors": blank}
    measured, failed = speed.cached(session, opts) is not None, None
    if measure and not measured:
        try:
            measured = speed.measure(session, opts) is not None
        except calls.TrainerCallFailed as exc:
            failed = f"could not measure this machine: {exc}"
    return {
        "measured": measured,
        "measure_error": failed,
        # about how long measuring would take: warm-up and a few steps, plus start-up
        "measure_s": round(10 + 5 * int(opts["batch"]) / 1000 * sec_per_kimg(session, opts)),
        "over_a_day": seconds(session, opts) > DAY_S,
        "ok": True,
        "seconds": seconds(session, opts),
        "sec_per_kimg": sec_per_kimg(session, opts),
        "first_progress_s": first_step_s(session, opts),
        "device": "cuda" if opts["gpus"] else "cpu",
        "calibrated_on": _calibration(session, "cuda" if opts["gpus"] else "cpu")[1],
    }
