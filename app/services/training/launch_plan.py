"""What a new job is launched on: a length the user gave, a confirmation for over a day, and
tick and snapshot intervals from the estimated speed.

With the trainer's fixed 4 kimg per tick and a snapshot every 50 ticks, a CPU job at ~800
s/kimg showed no loss, chart point or new sample grid for an hour. Left empty, the tick is
sized to about a minute and the snapshot (with its sample grid) to about two minutes at the
estimated speed, so a person sees the run is alive within about 2 minutes on any device.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy.orm import Session

from app.models import DatasetVersion
from app.schemas.jobs import KIMG_REQUIRED
from app.services.training import estimate, speed
from app.services.training.job_options import Devices, JobOptionsInvalid, validate_job_options

TICK_S = 60.0  # one tick (stats line: losses, chart point) about this often
SNAPSHOT_S = 120.0  # one snapshot and sample grid about this often
MAX_TICK_KIMG = 4.0  # the trainer's default tick; never longer


def _blank(raw: Mapping[str, Any], key: str) -> bool:
    v = raw.get(key)
    return v is None or (isinstance(v, str) and not v.strip())


def choose(sec_per_kimg: float, batch: int) -> tuple[float, int]:
    """(kimg per tick, ticks per snapshot) for a run at `sec_per_kimg`: a tick of about
    TICK_S (at least one minibatch, at most 4 kimg), a snapshot about every SNAPSHOT_S."""
    one_step = batch / 1000
    tick = min(MAX_TICK_KIMG, max(one_step, TICK_S / max(sec_per_kimg, 1e-9)))
    tick = max(one_step, float(f"{tick:.2g}"))
    return tick, max(1, round(SNAPSHOT_S / (tick * sec_per_kimg)))


def validated(
    session: Session, raw: Mapping[str, Any], devices: Devices
) -> tuple[DatasetVersion, dict[str, Any]]:
    """The job's checked options, planned: an empty length is an error (not a default length
    of a week on a CPU), named with the form's other problems."""
    missing = {"kimg": KIMG_REQUIRED} if _blank(raw, "kimg") else {}
    try:
        dataset, opts = validate_job_options(session, dict(raw), devices)
    except JobOptionsInvalid as exc:
        raise JobOptionsInvalid({**missing, **exc.errors}) from exc
    if missing:
        raise JobOptionsInvalid(missing)
    plan(session, opts, raw)
    return dataset, opts


def plan(session: Session, opts: dict[str, Any], raw: Mapping[str, Any]) -> None:
    """Refuse a job over a day unless confirmed; fill tick and snap left empty (`raw` is what
    the user sent). Writes the speed the plan rests on into `opts`."""
    sec = estimate.sec_per_kimg(session, opts)
    total = estimate.seconds(session, opts)
    if total > estimate.DAY_S and not opts.get("confirm_long"):
        raise JobOptionsInvalid({"confirm_long": (
            f"this job would take about {total / 86400:.1f} days here ({sec:.3g} s per kimg): "
            "confirm that it may run over a day, or shorten the length"
        )})  # fmt: skip
    tick, _ = choose(sec, int(opts["batch"]))
    if _blank(raw, "tick"):
        opts["tick"] = tick
    if _blank(raw, "snap"):
        opts["snap"] = max(1, round(SNAPSHOT_S / (float(opts["tick"] or 4.0) * sec)))
    opts["planned_sec_per_kimg"] = round(sec, 3)
    opts["speed_measured"] = speed.cached(session, opts) is not None
