"""Refusing impossible training jobs at submission, not after days in the queue.

Each job field is bounded on its own (the trainer's limits), but their combination can still
ask for more memory than any device has or centuries of training. Two checks, each naming the
fields to lower:

- memory: a lower bound (activations of one process's share of the batch, and the weights
  with their EMA copy and Adam moments) against this machine's memory for a CPU job or the
  largest GPU made for a GPU job: only what certainly cannot fit is refused;
- time: the job's estimate (estimate.seconds) against MEDSYNTH_MAX_JOB_HOURS.
"""

from __future__ import annotations

import math
from typing import Any

import psutil
from sqlalchemy.orm import Session

from app.services import limits
from app.services.training import estimate
from app.services.training.job_options import JobOptionsInvalid, trainer_defaults
from app.settings import Settings
from app.trainer_client.processes import Devices

GIB = 1024**3
# At least 8 stored values of 2 bytes per feature-map value and image (G and D, forward and
# backward, R1 and path length need more): a floor, the real figure is several times higher.
MIN_BYTES_PER_FEATURE = 16
MIN_BYTES_PER_PARAM = 16  # fp32 weights + 2 Adam moments + the EMA copy (G) / gradients (D)
LARGEST_GPU_BYTES = 141 * GIB  # one NVIDIA H200, the largest single GPU on sale
MAPPING_LAYERS = 2


def _network(opts: dict[str, Any]) -> tuple[int, int, int]:
    """(cbase, cmax, zdim) of the job: its own, else the trainer's defaults at its size."""
    keys = ("cbase", "cmax", "zdim")
    net = {k: opts.get(k) for k in keys}
    if None in net.values():
        d = trainer_defaults(int(opts["resolution"]), int(opts.get("gpus") or 0), opts["batch"])
        net = {k: d[k] if v is None else v for k, v in net.items()}
    return int(net["cbase"]), int(net["cmax"]), int(net["zdim"])


def min_memory_bytes(opts: dict[str, Any]) -> float:
    """A lower bound of one training process's memory (bytes) for the job's network."""
    cbase, cmax, zdim = _network(opts)
    sizes = [2**k for k in range(2, int(math.log2(int(opts["resolution"]))) + 1)]

    def channels(res: int) -> int:  # as trainer/info.py builds the layers
        return max(min(cbase // res, cmax), 1)

    features = 2 * sum(channels(r) * r * r for r in sizes)  # G and D, per image
    params = 2 * sum(2 * 9 * channels(r) ** 2 for r in sizes) + MAPPING_LAYERS * zdim * zdim
    per_process = math.ceil(int(opts["batch"]) / max(int(opts.get("gpus") or 0), 1))
    return per_process * features * MIN_BYTES_PER_FEATURE + params * MIN_BYTES_PER_PARAM


def check(session: Session, settings: Settings, opts: dict[str, Any], devices: Devices) -> None:
    """JobOptionsInvalid (422, by field) for a job that cannot fit or cannot finish in time."""
    need = min_memory_bytes(opts)
    if opts.get("gpus"):
        have, where = LARGEST_GPU_BYTES, "the largest GPU made (141 GiB)"
    elif not devices.cluster:
        have = psutil.virtual_memory().total
        where = f"this machine's memory ({have / GIB:,.0f} GiB)"
    else:
        have, where = math.inf, ""  # a node's memory is the scheduler's business
    if need > have:
        raise JobOptionsInvalid({
            "batch": f"this network at this batch needs at least {need / GIB:,.0f} GiB per "
            f"process, more than {where}; lower the batch, the channel base / max or the "
            "resolution"
        })  # fmt: skip
    why = limits.time_budget_error(
        settings, estimate.seconds(session, opts), "this job", "kimg (or the batch or network)"
    )
    if why is not None:
        raise JobOptionsInvalid({"kimg": why})
