"""Images from a snapshot: PNG 8/16-bit or NIfTI in Hounsfield units; also the training grids.

A seed's latent is np.random.RandomState(seed).randn(z_dim) and noise is the generator's
constant noise, so seed N gives the same image whatever else is generated with it.

A generator trained on image + mask (label_channels > 0) emits the image, then one channel per
label; each image is written with its label map (seedNNNN.mask.png / seedNNNN.mask.nii.gz,
0 background, 1 liver, 2 tumour), on the same grid and, for NIfTI, the same affine.
"""

from __future__ import annotations

import math
import os

import numpy as np
import torch

from trainer.generate_io import (
    hu_override,
    parse_seeds,
    save_nifti,
    save_png,
    seed_latents,
    to_hu,
    to_uint,
)


def _class_tensor(G: torch.nn.Module, classes: list[int | None], device) -> torch.Tensor | None:
    if G.c_dim == 0:
        return None
    if any(k is None for k in classes):
        raise ValueError(f"this generator is conditional: pass --class 0..{G.c_dim - 1}")
    if any(not 0 <= k < G.c_dim for k in classes):
        raise ValueError(f"--class must be in 0..{G.c_dim - 1}")
    return torch.nn.functional.one_hot(torch.tensor(classes), G.c_dim).float().to(device)


@torch.no_grad()
def synthesize(
    G: torch.nn.Module,
    seeds: list[int],
    psi: float = 1.0,
    classes: list[int | None] | int | None = None,
    device="cpu",
    batch: int = 8,
) -> torch.Tensor:
    """Float images [N, C, R, R] in about [-1, 1] on the CPU."""
    if not isinstance(classes, list):
        classes = [classes] * len(seeds)
    if G.c_dim == 0 and any(k is not None for k in classes):
        raise ValueError("this generator is unconditional: --class does not apply")
    z_all = seed_latents(seeds, G.z_dim)
    out = []
    for i in range(0, len(seeds), batch):
        z = z_all[i : i + batch].to(device)
        c = _class_tensor(G, classes[i : i + batch], device)
        img = G(z, c, truncation_psi=psi, noise_mode="const")
        out.append(img.float().cpu())
    return torch.cat(out) if out else torch.zeros([0, G.img_channels, G.img_resolution] * 2)


def generate_images(
    G: torch.nn.Module,
    seeds: list[int],
    psi: float = 1.0,
    class_idx: int | None = None,
    device="cpu",
    bits: int = 8,
) -> np.ndarray:
    """For the web app: [N, R, R] uint8 (bits=8) or uint16 (bits=16) grayscale images."""
    G = G.to(device)
    return to_uint(synthesize(G, seeds, psi, class_idx, device)[:, 0], bits)


def split_channels(G: torch.nn.Module, out: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """G's output [N, C + L, R, R] -> (image [N, C, R, R], label channels [N, L, R, R])."""
    ch = getattr(G, "image_channels", G.img_channels)
    return out[:, :ch], out[:, ch:]


def label_map(channels: torch.Tensor) -> np.ndarray:
    """Label channels [N, L, R, R] in about [-1, 1] -> uint8 [N, R, R]: the label whose channel
    is highest where it is above 0 (the midpoint of -1 'absent' and +1 'present'), else 0."""
    if channels.shape[1] == 0:
        return np.zeros((channels.shape[0], *channels.shape[2:]), np.uint8)
    best = channels.float().argmax(dim=1) + 1  # [N, R, R]
    present = channels.float().amax(dim=1) > 0
    return torch.where(present, best, torch.zeros_like(best)).numpy().astype(np.uint8)


def pixel_spacing(info: dict) -> tuple[float, float] | None:
    """(row, column) mm of the training images, from the snapshot's medsynth.json facts."""
    prov = info.get("provenance") or {}
    sp = prov.get("pixel_spacing_mm")
    if isinstance(sp, list | tuple) and len(sp) == 2 and all(float(v) > 0 for v in sp):
        return float(sp[0]), float(sp[1])
    return None


def grid_image(images: np.ndarray, cols: int) -> np.ndarray:
    """[N, R, R] -> one [rows*R, cols*R] mosaic, row-major."""
    n, r = images.shape[0], images.shape[-1]
    rows = math.ceil(n / cols)
    grid = np.zeros([rows * r, cols * r], dtype=images.dtype)
    for i, img in enumerate(images):
        y, x = divmod(i, cols)
        grid[y * r : (y + 1) * r, x * r : (x + 1) * r] = img
    return grid


def grid_shape(res: int) -> tuple[int, int]:
    """Columns and rows of a sample grid: about 2048 px wide, at most 8 x 4."""
    cols = max(min(2048 // res, 8), 2)
    return cols, max(cols // 2, 2)


def save_sample_grid(G: torch.nn.Module, path: str, device, seed: int = 0) -> None:
    """Fixed-seed grid of G's images; labels cycle 0, 1, ... when conditional."""
    cols, rows = grid_shape(G.img_resolution)
    seeds = list(range(seed, seed + cols * rows))
    classes = [i % G.c_dim if G.c_dim else None for i in range(len(seeds))]
    imgs = to_uint(synthesize(G, seeds, 1.0, classes, device)[:, 0], 8)
    folder, name = os.path.split(path)
    tmp = os.path.join(folder, f".{name}.tmp")  # matches no samples-*.png glob while written
    save_png(grid_image(imgs, cols), tmp)
    os.replace(tmp, path)


def run_generate(args) -> int:
    """The `generate` command; returns the number of files written."""
    from trainer.distributed import pick_device
    from trainer.snapshot import load_generator

    explicit = getattr(args, "z", None) or getattr(args, "c", None)
    if explicit or args.format == "npy" or getattr(args, "noise_mode", "const") != "const":
        from trainer.generate_raw import run_generate_raw

        return run_generate_raw(args)
    if not args.seeds:
        raise ValueError("give --seeds or --z FILE.npy")
    device = pick_device(args.device)
    seeds = parse_seeds(args.seeds)
    G, info = load_generator(args.snapshot, device, ema=not args.raw, return_info=True)
    mapping = hu_override(args.hu) or info.get("hu_mapping")
    if args.format == "nifti" and mapping is None:
        raise ValueError(
            "this snapshot has no HU mapping (its dataset had no medsynth.json "
            "window or HU range); pass --hu LO,HI or use --format png/png16"
        )
    os.makedirs(args.outdir, exist_ok=True)
    spacing = pixel_spacing(info)
    for i in range(0, len(seeds), args.batch):
        chunk = seeds[i : i + args.batch]
        out = synthesize(G, chunk, args.trunc, args.class_idx, device, args.batch)
        image, channels = split_channels(G, out)
        labels = label_map(channels) if channels.shape[1] else [None] * len(chunk)
        for seed, img, lab in zip(chunk, image[:, 0], labels, strict=True):
            base = os.path.join(args.outdir, f"seed{seed:04d}")
            _write_one(base, args.format, img, lab, mapping, spacing)
    return len(seeds)


def _write_one(base: str, fmt: str, img, labels, mapping, spacing) -> None:
    """One generated image (and its label map, when the generator makes one)."""
    if fmt == "nifti":
        save_nifti(to_hu(img, mapping), base + ".nii.gz", mapping, spacing)
        if labels is not None:
            save_nifti(labels, base + ".mask.nii.gz", None, spacing)
        return
    save_png(to_uint(img, 16 if fmt == "png16" else 8), base + ".png")
    if labels is not None:
        save_png(labels, base + ".mask.png")
