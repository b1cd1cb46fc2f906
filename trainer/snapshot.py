"""Full-state snapshots: written atomically, loadable as a bare generator without any options.

A snapshot is a plain dict of tensors and Python values (loadable with weights_only=True):
networks as {"init_kwargs", "state_dict"}, optimizers, ADA state, counters, every RNG state
(one entry per rank), the sampler position, the run's options and the dataset's HU mapping.
"""

from __future__ import annotations

import contextlib
import os
import random
import re
from typing import Any

import numpy as np
import torch

FORMAT = "medsynth-stylegan2-ada/1"
# snapshot-KKKKKK.pt (whole kimg), or snapshot-KKKKKK-NNNNNNNNN.pt (images shown) for a later
# snapshot within the same kimg, so runs shorter than 1 kimg never overwrite one (issue 10)
_NAME_RE = re.compile(r"^snapshot-(\d+)(?:-(\d+))?\.pt$")


class SnapshotError(ValueError):
    """The file is not a MedSynth snapshot or does not fit the run."""


def snapshot_name(cur_nimg: int, run_dir: str | None = None) -> str:
    """The first snapshot within a kimg is snapshot-KKKKKK.pt; later ones in the same kimg
    (short runs, resumes) add the images shown, so no snapshot overwrites another and the
    whole-kimg name is always the earliest of its kimg."""
    kimg = cur_nimg // 1000
    plain = f"snapshot-{kimg:06d}.pt"
    if run_dir is None or not _has_kimg(run_dir, kimg):
        return plain
    return f"snapshot-{kimg:06d}-{cur_nimg:09d}.pt"


def _has_kimg(run_dir: str, kimg: int) -> bool:
    """Whether the run directory already holds a snapshot within this kimg (any name)."""
    try:
        names = os.listdir(run_dir)
    except OSError:
        return False
    return any((m := _NAME_RE.match(n)) and int(m.group(1)) == kimg for n in names)


def _name_nimg(path: str) -> int:
    """Images shown by the name (a whole-kimg name counts as the start of its kimg)."""
    m = _NAME_RE.match(os.path.basename(path))
    return int(m.group(2)) if m.group(2) else int(m.group(1)) * 1000


def find_latest(run_dir: str) -> str | None:
    """Newest snapshot in a run directory (most images shown, then newest file), or None."""
    try:
        names = [n for n in os.listdir(run_dir) if _NAME_RE.match(n)]
    except OSError:
        return None
    if not names:
        return None
    paths = [os.path.join(run_dir, n) for n in names]
    return max(
        paths,
        key=lambda p: (_name_nimg(p), os.path.getmtime(p)),
    )


def capture_rng() -> dict[str, Any]:
    """Every RNG this process uses, as picklable plain values."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": {
            "kind": kind,
            "keys": keys.tolist(),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "gauss": float(gauss),
        },
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }
    return state


def restore_rng(state: dict[str, Any]) -> None:
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    n = state["numpy"]
    np.random.set_state(
        (n["kind"], np.array(n["keys"], dtype=np.uint32), n["pos"], n["has_gauss"], n["gauss"])
    )
    torch.set_rng_state(state["torch"].cpu())
    cuda = state.get("cuda") or []
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all([s.cpu() for s in cuda])


def seed_all(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def module_state(module: torch.nn.Module) -> dict[str, Any]:
    return {"init_kwargs": dict(module.init_kwargs), "state_dict": module.state_dict()}


def _fsync_dir(path: str) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def save_atomic(obj: Any, path: str) -> None:
    """torch.save to PATH.tmp, fsync, rename: a crash or a full disk never leaves half a file."""
    tmp = path + ".tmp"
    try:
        with open(tmp, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise
    _fsync_dir(os.path.dirname(os.path.abspath(path)))


def load_snapshot(path: str, device: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a snapshot; raises SnapshotError for anything that is not one."""
    if not os.path.isfile(path):
        raise SnapshotError(f"snapshot not found: {path}")
    try:
        state = torch.load(path, map_location=device, weights_only=True, mmap=True)
    except Exception as e:  # truncated zip, foreign pickle, ...
        raise SnapshotError(f"{path} is not a readable snapshot ({e})") from e
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise SnapshotError(f"{path} is not a MedSynth snapshot")
    return state


def build_network(entry: dict[str, Any], kind: str, device: str | torch.device = "cpu"):
    """Rebuild a Generator or Discriminator from {"init_kwargs", "state_dict"}."""
    from trainer.networks import Discriminator, Generator

    cls = {"G": Generator, "D": Discriminator}[kind]
    kwargs = dict(entry["init_kwargs"])
    if kind == "D":
        kwargs.setdefault("mapping_layers", 2)  # snapshots from before it was configurable
    net = cls(**kwargs)
    net.load_state_dict(entry["state_dict"])
    return net.to(device).eval().requires_grad_(False)


def load_generator(
    path: str, device: str | torch.device = "cpu", ema: bool = True, return_info: bool = False
):
    """The generator of a snapshot (G_ema by default), eval mode, no gradients.

    With return_info=True returns (G, info) where info holds the dataset facts stored at
    training time: "hu_mapping" ({"lo", "hi", "source"} or None), "bits", "resolution",
    "c_dim", "provenance" and the run's "options".
    """
    state = load_snapshot(path, "cpu")
    G = build_network(state["G_ema" if ema else "G"], "G", device)
    info = dict(state.get("dataset") or {})
    info["options"] = state.get("options")
    info["kimg"] = state["progress"]["cur_nimg"] / 1000
    return (G, info) if return_info else G
