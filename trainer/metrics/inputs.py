"""Images as the reference metrics expect them: uint8, grayscale replicated to 3 channels,
native size (torch-fidelity's extractors resize internally, as the reference code does).

Generated samples use the `generate` command's seeds (seed s -> RandomState(s) latent,
constant noise), so any sample named in a result can be regenerated with
`python -m trainer generate --seeds s [--class k]`.
"""

from __future__ import annotations

import hashlib
import os
import uuid
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import Dataset

from trainer.generate_io import seed_latents

Progress = Callable[[str, int, int], None]
IN_MEMORY_BYTES = 512 * 2**20  # larger sample sets go to a memory-mapped file in the workdir


def to_uint8(img: torch.Tensor) -> torch.Tensor:
    """[-1, 1] floats -> uint8 0..255 with the same rounding as `generate` (any device)."""
    return ((img.float() + 1) * 127.5).round().clamp(0, 255).to(torch.uint8)


def real_uint8(images: torch.Tensor, bits: int) -> np.ndarray:
    """Dataset pixels `[N, 1, R, R]` (uint8, or int16 = value - 32768 for 16-bit) -> uint8.
    16-bit is scaled by 255/65535, the same linear map the generator's range has."""
    x = images.cpu()
    if bits == 16:
        x = ((x.to(torch.int32) + 32768).double() / 257.0).round().to(torch.uint8)
    return np.ascontiguousarray(x.numpy().astype(np.uint8))


def content_hash(images: np.ndarray) -> str:
    """Hex SHA-256 of the uint8 pixels and shape: the key for cached real-image features."""
    h = hashlib.sha256(str(images.shape).encode())
    h.update(np.ascontiguousarray(images).data)
    return h.hexdigest()


class RGBImages(Dataset):
    """A uint8 `[N, C, R, R]` array (or a subset of it) as torch-fidelity's input: each item
    is a `[3, R, R]` uint8 tensor, grayscale replicated to 3 channels."""

    def __init__(self, images: np.ndarray, indices: np.ndarray | None = None):
        self.images = images
        self.indices = np.arange(len(images)) if indices is None else np.asarray(indices)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> torch.Tensor:
        x = torch.from_numpy(np.array(self.images[self.indices[i]]))  # [C, R, R], a copy
        return x.expand(3, -1, -1) if x.shape[0] == 1 else x


@dataclass
class Samples:
    """Generated images with what regenerates each: its seed and (if conditional) class."""

    images: np.ndarray  # [N, C, R, R] uint8, in memory or memory-mapped
    seeds: np.ndarray  # [N] int64
    classes: np.ndarray | None  # [N] int64, None for an unconditional generator


def sample_classes(c_dim: int, labels: np.ndarray | None, num: int, seed: int) -> np.ndarray | None:
    """Classes for a conditional generator, drawn from the dataset's label frequencies."""
    if c_dim == 0:
        return None
    rng = np.random.default_rng([seed, 1])
    if labels is not None and len(labels):
        return rng.choice(np.asarray(labels, dtype=np.int64), size=num)
    return rng.integers(0, c_dim, size=num)


def one_hot(classes: np.ndarray | None, c_dim: int, device) -> torch.Tensor | None:
    if classes is None:
        return None
    return torch.nn.functional.one_hot(torch.as_tensor(classes), c_dim).float().to(device)


def allocate(shape: tuple[int, ...], workdir: str | None) -> np.ndarray:
    """uint8 array; memory-mapped under `workdir` when it would be large (10k x 512^2 = 2.6 GB)."""
    if workdir is None or int(np.prod(shape)) <= IN_MEMORY_BYTES:
        return np.empty(shape, dtype=np.uint8)
    path = os.path.join(workdir, f"samples-{uuid.uuid4().hex}.npy")
    return np.lib.format.open_memmap(path, mode="w+", dtype=np.uint8, shape=shape)


@torch.no_grad()
def generate_samples(
    G: torch.nn.Module,
    num: int,
    *,
    seed: int = 0,
    device: str | torch.device = "cpu",
    batch: int = 16,
    labels: np.ndarray | None = None,
    truncation_psi: float = 1.0,
    noise_mode: str = "const",
    workdir: str | None = None,
    progress: Progress | None = None,
) -> Samples:
    """`num` images for seeds seed..seed+num-1, stored as uint8 `[num, C, R, R]`."""
    seeds = np.arange(seed, seed + num, dtype=np.int64)
    classes = sample_classes(G.c_dim, labels, num, seed)
    res = G.img_resolution
    ch = getattr(G, "image_channels", G.img_channels)  # paired masks: score the image only
    out = allocate((num, ch, res, res), workdir)
    for start in range(0, num, batch):
        end = min(start + batch, num)
        z = seed_latents(seeds[start:end].tolist(), G.z_dim).to(device)  # [B, z_dim]
        c = one_hot(None if classes is None else classes[start:end], G.c_dim, device)
        img = G(z, c, truncation_psi=truncation_psi, noise_mode=noise_mode)[:, :ch]  # [B, C, R, R]
        out[start:end] = to_uint8(img).cpu().numpy()
        if progress:
            progress("generate", end, num)
    return Samples(out, seeds, classes)


def downsample(images: np.ndarray | torch.Tensor, size: int) -> torch.Tensor:
    """uint8 `[N, C, R, R]` -> float `[N, C, size, size]` in [0, 255] by area averaging."""
    x = torch.as_tensor(np.asarray(images)).float()
    if x.shape[-1] == size:
        return x
    return torch.nn.functional.interpolate(x, size=(size, size), mode="area")
