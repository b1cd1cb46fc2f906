"""The dataset zip (StyleGAN2-ADA layout), read into memory once, and a resumable sampler."""

from __future__ import annotations

import io
import json
import os
import re
import zipfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from PIL import Image

_IMAGE_RE = re.compile(r"(^|/)[^/]+\.png$", re.IGNORECASE)
MASK_SUFFIX = ".mask.npy"  # label map beside its image: img00000000.png -> img00000000.mask.npy


class DatasetError(ValueError):
    """The dataset zip is missing, unreadable or not what the options ask for."""


@dataclass
class ImageDataset:
    """All images of a zip as integers in memory; `images` is int16 (16-bit, offset) or uint8."""

    images: torch.Tensor  # [N, 1, R, R] uint8, or int16 holding value - 32768 for 16-bit
    bits: int
    labels: np.ndarray | None  # [N] int64, or None when the zip has none
    names: list[str]
    provenance: dict[str, Any] = field(default_factory=dict)
    mirror: bool = False
    masks: torch.Tensor | None = None  # [N, 1, R, R] uint8 label ids (0 = background), or None
    label_names: tuple[str, ...] = ()  # channel k of the label part is label id k + 1

    @property
    def image_channels(self) -> int:
        return int(self.images.shape[1])

    @property
    def label_channels(self) -> int:
        """One channel per label (liver, tumour) when the zip has masks, else 0."""
        return 0 if self.masks is None else len(self.label_names)

    @property
    def num_channels(self) -> int:
        """What G makes and D sees: the image channel(s), then one channel per label."""
        return self.image_channels + self.label_channels

    @property
    def resolution(self) -> int:
        return int(self.images.shape[-1])

    @property
    def num_images(self) -> int:
        return int(self.images.shape[0])

    def __len__(self) -> int:
        """Size of the index space: doubled when x-mirrored copies are added."""
        return self.num_images * (2 if self.mirror else 1)

    @property
    def c_dim(self) -> int:
        """Classes for --cond: at least two (normal, tumour)."""
        return 0 if self.labels is None else max(2, int(self.labels.max()) + 1)

    def to(self, device: torch.device | str) -> ImageDataset:
        self.images = self.images.to(device)
        if self.masks is not None:
            self.masks = self.masks.to(device)
        return self

    def get_images(self, idx: torch.Tensor) -> torch.Tensor:
        """Float images in [-1, 1] for dataset indices; indices >= num_images are mirrored."""
        idx = idx.to(self.images.device)
        n = self.num_images
        raw = self.images.index_select(0, idx % n).float()  # [B, 1, R, R]
        if self.bits == 16:
            x = (raw + 32768.0) * (2.0 / 65535.0) - 1.0
        else:
            x = raw * (2.0 / 255.0) - 1.0
        if self.masks is not None:  # label k -> +1 in channel k, -1 elsewhere
            m = self.masks.index_select(0, idx % n)  # [B, 1, R, R]
            ids = torch.arange(1, self.label_channels + 1, device=m.device).view(1, -1, 1, 1)
            x = torch.cat([x, (m == ids).float() * 2 - 1], dim=1)  # [B, C + L, R, R]
        if self.mirror:
            flip = (idx >= n).view(-1, 1, 1, 1)
            x = torch.where(flip, x.flip(-1), x)
        return x

    def get_labels(self, idx: torch.Tensor, c_dim: int) -> torch.Tensor:
        """One-hot labels [B, c_dim], or a zero-width tensor when unconditional."""
        if c_dim == 0:
            return torch.zeros([len(idx), 0])
        assert self.labels is not None
        lab = torch.as_tensor(self.labels)[idx.cpu() % self.num_images]
        return torch.nn.functional.one_hot(lab, c_dim).float()


def _decode_png(name: str, data: bytes) -> np.ndarray:
    try:
        with Image.open(io.BytesIO(data)) as im:
            im.load()
            mode = im.mode
            if mode == "L":
                return np.asarray(im, dtype=np.uint8)
            if mode in ("I;16", "I;16B", "I;16L", "I"):
                arr = np.asarray(im)
                if arr.min() < 0 or arr.max() > 65535:
                    raise DatasetError(f"{name}: 32-bit values outside the 16-bit range")
                return arr.astype(np.uint16)
    except DatasetError:
        raise
    except Exception as e:  # PIL raises many kinds for a damaged PNG
        raise DatasetError(f"{name}: cannot decode PNG ({e})") from e
    raise DatasetError(f"{name}: mode {mode} is not grayscale (need 8-bit L or 16-bit I;16)")


def _read_json(zf: zipfile.ZipFile, name: str) -> Any:
    if name not in zf.namelist():
        return None
    try:
        return json.loads(zf.read(name))
    except (ValueError, zipfile.BadZipFile) as e:
        raise DatasetError(f"{name} in the zip is not valid JSON ({e})") from e


def _read_members(path: str) -> tuple[list[tuple[str, bytes]], Any, Any, dict[str, bytes]]:
    """(image members, dataset.json, medsynth.json, label-map members by name)."""
    if not os.path.isfile(path):
        raise DatasetError(f"dataset zip not found: {path}")
    try:
        with zipfile.ZipFile(path) as zf:
            names = sorted(n for n in zf.namelist() if _IMAGE_RE.search(n))
            members = [(n, zf.read(n)) for n in names]
            masks = {n: zf.read(n) for n in zf.namelist() if n.endswith(MASK_SUFFIX)}
            meta, prov = _read_json(zf, "dataset.json"), _read_json(zf, "medsynth.json")
            return members, meta, prov, masks
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, OSError) as e:
        raise DatasetError(f"{path} is not a readable zip file ({e})") from e


def _label_names(provenance: Any) -> tuple[str, ...]:
    """Label names by id 1.. from medsynth.json's masks description (default liver, tumour)."""
    labels = (provenance or {}).get("masks") or {}
    table = labels.get("labels") if isinstance(labels, dict) else None
    if not isinstance(table, dict):
        return ("liver", "tumour")
    ids = sorted(int(k) for k in table if str(k).isdigit() and int(k) > 0)
    if ids != list(range(1, len(ids) + 1)):
        raise DatasetError(f"medsynth.json mask labels must be numbered 1..N, got {ids}")
    return tuple(str(table[str(k)]) for k in ids)


def _decode_masks(
    names: list[str], found: dict[str, bytes], res: int, label_names: tuple[str, ...]
) -> torch.Tensor | None:
    """[N, 1, R, R] uint8 label maps paired with the images by name, or None without any."""
    if not found:
        return None
    out = np.empty((len(names), 1, res, res), dtype=np.uint8)
    for i, name in enumerate(names):
        mask_file = name.removesuffix(".png").removesuffix(".PNG") + MASK_SUFFIX
        if mask_file not in found:
            raise DatasetError(f"{name} has no label map {mask_file} (the zip has masks)")
        try:
            arr = np.load(io.BytesIO(found[mask_file]), allow_pickle=False)
        except ValueError as e:
            raise DatasetError(f"{mask_file}: not a readable .npy array ({e})") from e
        if arr.shape != (res, res) or arr.dtype != np.uint8:
            got = f"{arr.dtype} {arr.shape}"
            raise DatasetError(f"{mask_file}: need uint8 [{res}, {res}], not {got}")
        if arr.max() > len(label_names):
            raise DatasetError(f"{mask_file}: label {arr.max()} is not in {label_names}")
        out[i, 0] = arr
    return torch.from_numpy(out)


def _labels_for(names: list[str], meta: Any) -> np.ndarray | None:
    if not isinstance(meta, dict) or meta.get("labels") is None:
        return None
    try:
        table = {str(k): int(v) for k, v in meta["labels"]}
    except (TypeError, ValueError) as e:
        raise DatasetError(f"dataset.json labels are not [name, int] pairs ({e})") from e
    if not all(n in table for n in names):  # also accept bare file names as keys
        table.update({os.path.basename(k): v for k, v in list(table.items())})
        names = [os.path.basename(n) for n in names]
    missing = [n for n in names if n not in table]
    if missing:
        raise DatasetError(f"dataset.json has no label for {missing[0]} ({len(missing)} missing)")
    labels = np.array([table[n] for n in names], dtype=np.int64)
    if labels.min() < 0:
        raise DatasetError("dataset.json labels must be >= 0")
    return labels


def _stack(decoded: list[np.ndarray], names: list[str]) -> tuple[np.ndarray, int]:
    first = decoded[0]
    for name, arr in zip(names, decoded, strict=True):
        if arr.ndim != 2 or arr.shape[0] != arr.shape[1]:
            raise DatasetError(f"{name}: image is {arr.shape[1]}x{arr.shape[0]}, not square")
        if arr.shape != first.shape:
            raise DatasetError(f"{name}: size {arr.shape[0]} differs from {first.shape[0]}")
        if arr.dtype != first.dtype:
            raise DatasetError(f"{name}: bit depth differs from {names[0]} (mixed 8/16-bit)")
    res = first.shape[0]
    if res < 4 or res & (res - 1):
        raise DatasetError(f"image size {res} is not a power of two >= 4")
    return np.stack(decoded)[:, None], 16 if first.dtype == np.uint16 else 8


def load_dataset(
    path: str,
    resolution: int | None = None,
    mirror: bool = False,
    cond: bool = False,
    workers: int = 1,
) -> ImageDataset:
    """Read and validate the zip; raises DatasetError with a message a user can act on."""
    members, meta, provenance, mask_members = _read_members(path)
    if not members:
        raise DatasetError(f"{path} contains no PNG images")
    names = [n for n, _ in members]
    with ThreadPoolExecutor(max(1, workers)) as pool:
        decoded = list(pool.map(lambda m: _decode_png(*m), members))
    arr, bits = _stack(decoded, names)  # [N, 1, R, R]
    if resolution is not None and arr.shape[-1] != resolution:
        raise DatasetError(f"images are {arr.shape[-1]}x{arr.shape[-1]} but --res is {resolution}")
    labels = _labels_for(names, meta)
    if cond and labels is None:
        raise DatasetError("--cond needs labels in dataset.json; this zip has none")
    if bits == 16:
        images = torch.from_numpy((arr.astype(np.int32) - 32768).astype(np.int16))
    else:
        images = torch.from_numpy(arr)
    prov = provenance if isinstance(provenance, dict) else {}
    label_names = _label_names(prov) if mask_members else ()
    masks = _decode_masks(names, mask_members, arr.shape[-1], label_names)
    return ImageDataset(images, bits, labels, names, prov, mirror, masks, label_names)


class InfiniteSampler:
    """Endless shuffled index stream; its position is part of the training state.

    Epoch e is a permutation drawn from (seed, e), so the position alone says what comes next.
    Every rank walks the same global stream and keeps its own slice of each minibatch.
    """

    def __init__(self, size: int, seed: int = 0, shuffle: bool = True) -> None:
        self.size, self.seed, self.shuffle = size, seed, shuffle
        self.pos = 0
        self._epoch, self._perm = -1, np.arange(size)

    def _order(self, epoch: int) -> np.ndarray:
        if epoch != self._epoch:
            rng = np.random.default_rng([self.seed, epoch])
            self._perm = rng.permutation(self.size) if self.shuffle else np.arange(self.size)
            self._epoch = epoch
        return self._perm

    def next_batch(self, batch: int, rank: int = 0, world_size: int = 1) -> torch.Tensor:
        """The next `batch` global indices, this rank's share [batch // world_size]."""
        out = np.empty(batch, dtype=np.int64)
        for i in range(batch):
            epoch, k = divmod(self.pos + i, self.size)
            out[i] = self._order(epoch)[k]
        self.pos += batch
        per = batch // world_size
        return torch.from_numpy(out[rank * per : (rank + 1) * per])

    def state_dict(self) -> dict[str, int]:
        return {"pos": self.pos, "seed": self.seed, "size": self.size}

    def load_state_dict(self, state: dict[str, int]) -> None:
        if state["size"] != self.size:
            raise DatasetError(
                f"the snapshot was trained on {state['size']} samples, this dataset has "
                f"{self.size}; use the same dataset (and --mirror) to resume"
            )
        self.seed, self.pos = int(state["seed"]), int(state["pos"])
        self._epoch = -1
