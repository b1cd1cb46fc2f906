"""`python -m trainer import-pkl FILE.pkl --out SNAPSHOT.pt`: a published StyleGAN2-ADA
checkpoint (NVlabs stylegan2-ada-pytorch) as a MedSynth snapshot to fine-tune from.

The pickle is read by `safe_pickle` (nothing from the file runs). G, D and G_ema are rebuilt
from their recorded constructor arguments and every tensor is copied by name; the reference
stores its up-sampling convolutions as true convolutions, ours correlate, so those kernels are
rotated by 180 degrees. `--channels 1` turns an RGB checkpoint gray exactly: ToRGB rows are
combined with the BT.601 luma weights and FromRGB columns summed, so the gray G makes the luma
of the RGB image and the gray D scores x as the RGB D scores (x, x, x). `--channels 3` does the
converse for a gray checkpoint.

The snapshot has no optimizer state, counters or RNG: `train --resume SNAPSHOT.pt` in a new
--outdir fine-tunes it (fresh Adam, ADA starting from the pipe's recorded p), taking the
architecture (z/w dims, mapping depths, channel base/max, conv clamp, minibatch-std group) from
the snapshot and everything else (lr, gamma, batch, augmentation, kimg) from the flags or the
preset, as for any snapshot of another run.
"""

from __future__ import annotations

import hashlib
import math
import os
import re
from typing import Any

import torch

from trainer import snapshot
from trainer.channel_convert import convert_discriminator, convert_generator
from trainer.safe_pickle import PersistentRecord, RefusedPickle, load_pickle, module_tensors

REQUIRED = object()  # an argument the record must hold


class CheckpointImportError(ValueError):
    """The pickle is safe to read but is not a checkpoint we can map (exit code 2)."""


def _kwargs(rec: PersistentRecord) -> dict[str, Any]:
    kw = rec.state.get("_init_kwargs")
    args = rec.state.get("_init_args") or ()
    if not isinstance(kw, dict) or args:
        raise CheckpointImportError(f"{rec.class_name}: no recorded keyword constructor arguments")
    return dict(kw)


def _only(kwargs: dict, allowed: dict[str, Any], what: str) -> dict[str, Any]:
    """Known options with their defaults; an option we do not implement is refused."""
    extra = {k: v for k, v in kwargs.items() if k not in allowed}
    if extra:
        raise CheckpointImportError(f"{what}: options {sorted(extra)} are not supported")
    absent = sorted(k for k, v in allowed.items() if v is REQUIRED and k not in kwargs)
    if absent:
        raise CheckpointImportError(f"{what}: the recorded arguments lack {absent}")
    return {**allowed, **kwargs}


def _bf16_min_res(res: int, num_fp16_res: int) -> int:
    """The reference runs its last `num_fp16_res` resolutions in fp16; ours those in bf16."""
    if num_fp16_res <= 0:
        return 0
    return max(2 ** (int(math.log2(res)) + 1 - num_fp16_res), 8)


def generator_kwargs(rec: PersistentRecord) -> dict[str, Any]:
    kw = _kwargs(rec)
    top = _only(
        kw,
        dict(z_dim=REQUIRED, c_dim=REQUIRED, w_dim=REQUIRED, img_resolution=REQUIRED,
             img_channels=REQUIRED,
             mapping_kwargs={}, synthesis_kwargs={}),
        "Generator",
    )  # fmt: skip
    mapping = _only(dict(top["mapping_kwargs"]), dict(num_layers=8), "G mapping")
    syn = _only(
        dict(top["synthesis_kwargs"]),
        dict(channel_base=32768, channel_max=512, num_fp16_res=0, conv_clamp=None,
             architecture="skip"),
        "G synthesis",
    )  # fmt: skip
    if syn["architecture"] != "skip":
        raise CheckpointImportError(
            f"G architecture {syn['architecture']!r}: only 'skip' is supported"
        )
    res = int(top["img_resolution"])
    return dict(
        z_dim=int(top["z_dim"]),
        c_dim=int(top["c_dim"]),
        w_dim=int(top["w_dim"]),
        img_resolution=res,
        img_channels=int(top["img_channels"]),
        mapping_layers=int(mapping["num_layers"]),
        channel_base=int(syn["channel_base"]),
        channel_max=int(syn["channel_max"]),
        bf16_min_res=_bf16_min_res(res, int(syn["num_fp16_res"])),
        conv_clamp=syn["conv_clamp"],
    )


def discriminator_kwargs(rec: PersistentRecord) -> dict[str, Any]:
    kw = _only(
        _kwargs(rec),
        dict(c_dim=REQUIRED, img_resolution=REQUIRED, img_channels=REQUIRED, architecture="resnet",
             channel_base=32768, channel_max=512, num_fp16_res=0, conv_clamp=None,
             cmap_dim=None, block_kwargs={}, mapping_kwargs={}, epilogue_kwargs={}),
        "Discriminator",
    )  # fmt: skip
    if kw["architecture"] != "resnet" or kw["block_kwargs"]:
        raise CheckpointImportError(
            "D: only the 'resnet' architecture with default blocks is supported"
        )
    mapping = _only(dict(kw["mapping_kwargs"]), dict(num_layers=8), "D mapping")
    epi = _only(
        dict(kw["epilogue_kwargs"]), dict(mbstd_group_size=4, mbstd_num_channels=1), "D epilogue"
    )
    res = int(kw["img_resolution"])
    return dict(
        c_dim=int(kw["c_dim"]),
        img_resolution=res,
        img_channels=int(kw["img_channels"]),
        channel_base=int(kw["channel_base"]),
        channel_max=int(kw["channel_max"]),
        mbstd_group_size=int(epi["mbstd_group_size"]),
        mbstd_num_channels=int(epi["mbstd_num_channels"]),
        cmap_dim=kw["cmap_dim"],
        bf16_min_res=_bf16_min_res(res, int(kw["num_fp16_res"])),
        conv_clamp=kw["conv_clamp"],
        mapping_layers=int(mapping["num_layers"]),
    )


def generator_tensor_name(name: str, resolutions: list[int]) -> tuple[str, bool]:
    """Reference G tensor name -> (our name, rotate the kernel by 180 degrees)."""
    name = re.sub(r"^mapping\.fc(\d+)\.", r"mapping.layers.\1.", name)
    m = re.match(r"^synthesis\.b(\d+)\.(.*)$", name)
    if not m:
        return name, False
    block, rest = resolutions.index(int(m.group(1))), m.group(2)
    rest = re.sub(r"^(conv0|conv1|torgb)\.(affine\.|weight$|resample_filter$)", r"\1.conv.\2", rest)
    return f"synthesis.blocks.{block}.{rest}", rest == "conv0.conv.weight"


def discriminator_tensor_name(name: str, resolutions: list[int]) -> str:
    """Reference D tensor name -> our name."""
    name = re.sub(r"^mapping\.fc(\d+)\.", r"mapping.layers.\1.", name)
    name = re.sub(r"^b4\.(conv|fc|out)\.", r"epilogue.\1.", name)
    m = re.match(r"^b(\d+)\.(.*)$", name)
    return f"blocks.{resolutions.index(int(m.group(1)))}.{m.group(2)}" if m else name


def _load(net: torch.nn.Module, tensors: dict[str, torch.Tensor], what: str) -> None:
    """Copy every tensor. FIR filters must be ours ([1, 3, 3, 1]) wherever either side keeps
    one; D's label embedding keeps no w_avg in the reference (ours is unused there)."""
    ours = net.state_dict()
    default_filter = next(v for k, v in ours.items() if k.endswith("resample_filter"))
    for k in [k for k in tensors if k.endswith("resample_filter")]:
        if not torch.allclose(tensors[k].float(), default_filter, atol=1e-6):
            raise CheckpointImportError(f"{what}: {k} is not the [1, 3, 3, 1] filter ours uses")
        if k not in ours:
            del tensors[k]
    optional = ("resample_filter", "mapping.w_avg") if what == "D" else ("resample_filter",)
    unknown = sorted(set(tensors) - set(ours))
    missing = sorted(k for k in set(ours) - set(tensors) if not k.endswith(optional))
    if unknown or missing:
        raise CheckpointImportError(f"{what}: tensors do not match ours (unknown {unknown[:4]}, "
                                    f"missing {missing[:4]})")  # fmt: skip
    for k, t in tensors.items():
        if t.shape != ours[k].shape:
            got, want = list(t.shape), list(ours[k].shape)
            raise CheckpointImportError(f"{what}: {k} has shape {got}, ours {want}")
    net.load_state_dict({**ours, **{k: t.float() for k, t in tensors.items()}})


def load_reference_generator(G: torch.nn.Module, tensors: dict[str, torch.Tensor]) -> None:
    """Copy a reference G's tensors, named as in its state_dict, into our Generator `G`."""
    res = G.synthesis.block_resolutions
    mapped = {}
    for name, t in tensors.items():
        ours, rotate = generator_tensor_name(name, res)
        mapped[ours] = t.flip([2, 3]) if rotate else t
    _load(G, mapped, "G")


def load_reference_discriminator(D: torch.nn.Module, tensors: dict[str, torch.Tensor]) -> None:
    """Copy a reference D's tensors, named as in its state_dict, into our Discriminator `D`."""
    res = D.block_resolutions
    _load(D, {discriminator_tensor_name(n, res): t for n, t in tensors.items()}, "D")


def build_generator(rec: PersistentRecord, channels: int | None = None):
    from trainer.networks import Generator

    G = Generator(**generator_kwargs(rec))
    load_reference_generator(G, module_tensors(rec))
    return convert_generator(G, channels) if channels else G


def build_discriminator(rec: PersistentRecord, channels: int | None = None):
    from trainer.networks import Discriminator

    D = Discriminator(**discriminator_kwargs(rec))
    load_reference_discriminator(D, module_tensors(rec))
    return convert_discriminator(D, channels) if channels else D


def _record(data: dict, key: str, class_name: str) -> PersistentRecord:
    rec = data.get(key)
    if not isinstance(rec, PersistentRecord) or rec.class_name != class_name:
        found = rec.class_name if isinstance(rec, PersistentRecord) else type(rec).__name__
        raise CheckpointImportError(f"{key!r} is not a recorded {class_name} (found {found})")
    return rec


def import_checkpoint(path: str, channels: int | None = None) -> dict[str, Any]:
    """The snapshot dict for a reference .pkl. Raises RefusedPickle or CheckpointImportError."""
    data = load_pickle(path)
    if not isinstance(data, dict):
        raise CheckpointImportError(
            f"{path}: not a StyleGAN2-ADA snapshot (a {type(data).__name__})"
        )
    nets = {}
    for key, cls in (("G", "Generator"), ("G_ema", "Generator"), ("D", "Discriminator")):
        rec = _record(data, key, cls)
        build = build_generator if cls == "Generator" else build_discriminator
        try:
            nets[key] = build(rec, channels)
        except (TypeError, ValueError, KeyError, AssertionError, RuntimeError) as e:
            if isinstance(e, CheckpointImportError):
                raise
            raise CheckpointImportError(f"{key}: not a network we can rebuild ({e})") from e
    p = 0.0
    pipe = data.get("augment_pipe")
    if isinstance(pipe, PersistentRecord):
        p_tensor = (pipe.state.get("_buffers") or {}).get("p")
        p = float(p_tensor) if isinstance(p_tensor, torch.Tensor) else 0.0
    return _snapshot(path, nets, p, data.get("training_set_kwargs"))


def _snapshot(path: str, nets: dict, p: float, training_set: Any) -> dict[str, Any]:
    G = nets["G_ema"]
    with open(path, "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()
    source = {
        "file": os.path.basename(path),
        "sha256": digest,
        "training_set_kwargs": {k: str(v) for k, v in dict(training_set or {}).items()},
    }
    res = G.img_resolution
    return {
        "format": snapshot.FORMAT,
        "imported": source,
        "G": snapshot.module_state(nets["G"]),
        "D": snapshot.module_state(nets["D"]),
        "G_ema": snapshot.module_state(G),
        "opt_G": None,
        "opt_D": None,
        "augment": {"p": p, "ada": None},
        "pl_mean": torch.zeros([]),
        "progress": {"tick": 0, "tick_start_nimg": 0, "tick_elapsed": 0.0,
                     "last_snapshot_nimg": 0, "cur_nimg": 0},
        "options": _options(nets),
        "dataset": {"hu_mapping": None, "bits": 8, "resolution": res, "c_dim": G.c_dim,
                    "num_images": None, "provenance": {"imported_from": source["file"]}},
    }  # fmt: skip


def _options(nets: dict) -> dict[str, Any]:
    """A RunConfig recording the architecture (for `info`); fine-tuning reads only G and D."""
    from trainer.config import (
        AugmentConfig,
        LossConfig,
        NetworkConfig,
        RunConfig,
        TrainConfig,
        auto_batch,
    )

    g, d = nets["G_ema"].init_kwargs, nets["D"].init_kwargs
    net = NetworkConfig(
        img_resolution=g["img_resolution"],
        img_channels=g["img_channels"],
        c_dim=g["c_dim"],
        z_dim=g["z_dim"],
        w_dim=g["w_dim"],
        mapping_layers=g["mapping_layers"],
        channel_base=g["channel_base"],
        channel_max=g["channel_max"],
        mbstd_group_size=d["mbstd_group_size"],
        mbstd_num_channels=d["mbstd_num_channels"],
        conv_clamp=g["conv_clamp"],
        bf16_min_res=g["bf16_min_res"],
        d_mapping_layers=d["mapping_layers"],
    )
    train = TrainConfig(batch=auto_batch(g["img_resolution"]))
    return RunConfig(net, LossConfig(), AugmentConfig(), train).to_dict()


def run_import(args) -> dict[str, Any]:
    """The `import-pkl` command; returns the JSON line's facts."""
    state = import_checkpoint(args.pkl, args.channels)
    out = os.path.abspath(args.out)
    os.makedirs(os.path.dirname(out), exist_ok=True)
    snapshot.save_atomic(state, out)
    g = state["G_ema"]["init_kwargs"]
    return {
        "out": out,
        "resolution": g["img_resolution"],
        "channels": g["img_channels"],
        "c_dim": g["c_dim"],
        "z_dim": g["z_dim"],
        "augment_p": state["augment"]["p"],
        "sha256": state["imported"]["sha256"],
    }


__all__ = ["CheckpointImportError", "RefusedPickle", "import_checkpoint", "run_import"]
