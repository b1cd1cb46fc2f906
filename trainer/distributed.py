"""torchrun support: process group from the environment, gradient and statistic reductions.

Gradients are averaged by one flat all-reduce per phase (no DDP wrapper), which keeps the
double-backward regularisers simple. Every helper is a no-op in a single process.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def pick_device(name: str, local_rank: int = 0) -> torch.device:
    """'auto' means CUDA when present; under torchrun each local rank takes its own GPU."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        if not torch.cuda.is_available():
            raise ValueError("--device cuda but no CUDA device is available")
        torch.cuda.set_device(local_rank)
        return torch.device("cuda", local_rank)
    if name != "cpu":
        raise ValueError(f"unknown device {name!r} (cpu, cuda or auto)")
    return torch.device("cpu")


def init_from_env(device: torch.device) -> DistInfo:
    """Join the process group torchrun describes in WORLD_SIZE/RANK/LOCAL_RANK, if any."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    _stop_with_launcher()
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        kwargs = {"device_id": device} if device.type == "cuda" else {}
        dist.init_process_group(backend, rank=rank, world_size=world, **kwargs)
    return DistInfo(rank, world, local)


def _stop_with_launcher() -> None:
    """Under torchrun, have the kernel send SIGTERM when the launcher dies. torchrun starts its
    workers in sessions of their own, so when it is killed outright (`srun` turns a SIGTERM
    into SIGKILL; a scheduler tracking process groups stops there) they would train on with
    nobody to report to; SIGTERM makes them stop at a minibatch boundary with a snapshot."""
    if "TORCHELASTIC_RUN_ID" not in os.environ or not sys.platform.startswith("linux"):
        return
    pr_set_pdeathsig = 1
    ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, int(signal.SIGTERM), 0, 0, 0)
    if os.getppid() == 1:  # the launcher died before we asked
        os.kill(os.getpid(), signal.SIGTERM)


def active() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def shutdown(clean: bool = True) -> None:
    """Leave the process group; after a clean finish, wait for the others first (rank 0 may
    still be writing a snapshot)."""
    if dist.is_available() and dist.is_initialized():
        if clean and dist.get_world_size() > 1:
            dist.barrier()
        dist.destroy_process_group()


def barrier() -> None:
    """Wait for every rank (e.g. while rank 0 alone measures FID/KID)."""
    if active():
        dist.barrier()


def all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    """Sum over ranks, in place; returns t."""
    if active():
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def all_reduce_mean_(tensors: list[torch.Tensor]) -> None:
    """Average a list of same-dtype tensors over ranks with one flat all-reduce."""
    if not active() or not tensors:
        return
    flat = torch.cat([t.reshape(-1) for t in tensors])
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    flat /= dist.get_world_size()
    offset = 0
    for t in tensors:
        n = t.numel()
        t.copy_(flat[offset : offset + n].view_as(t))
        offset += n


def average_gradients(module: torch.nn.Module) -> None:
    """Average .grad of every trainable parameter over ranks (missing grads count as zero)."""
    if not active():
        return
    params = [p for p in module.parameters() if p.requires_grad]
    for p in params:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
    all_reduce_mean_([p.grad for p in params])


def any_rank(flag: bool, device: torch.device) -> bool:
    """True on every rank when it is true on any (e.g. a stop request seen by one)."""
    if not active():
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item() > 0)


def gather_objects(obj: Any) -> list[Any]:
    """Every rank's obj, in rank order (for per-rank RNG states in a snapshot)."""
    if not active():
        return [obj]
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def max_divergence(module: torch.nn.Module) -> float:
    """Largest difference of any parameter or buffer from rank 0's; 0 in one process."""
    if not active():
        return 0.0
    worst = torch.zeros([], dtype=torch.float64)
    for t in list(module.parameters()) + list(module.buffers()):
        if not t.is_floating_point():
            continue
        ref = t.detach().clone()
        dist.broadcast(ref, src=0)
        worst = torch.maximum(worst, (t.detach() - ref).abs().max().double().cpu())
    worst_t = worst.to(next(module.parameters()).device)
    dist.all_reduce(worst_t, op=dist.ReduceOp.MAX)
    return float(worst_t.item())
