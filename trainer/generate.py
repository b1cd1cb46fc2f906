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
import re

import numpy as np
import torch
from PIL import Image


def parse_seeds(text: str) -> list[int]:
    """'0-99', '1,5,7' or a mix like '0-3,10' -> list of ints."""
    seeds: list[int] = []
    for part in text.split(","):
        part = part.strip()
        m = re.fullmatch(r"(\d+)\s*-\s*(\d+)", part)
        if m:
            lo, hi = int(m.group(1)), int(m.group(2))
            if hi < lo:
                raise ValueError(f"seed range {part!r} runs backwards")
            seeds.extend(range(lo, hi + 1))
        elif re.fullmatch(r"\d+", part):
            seeds.append(int(part))
        else:
            raise ValueError(f"bad seed list {text!r}: use e.g. 0-99 or 1,5,7")
    return seeds


def seed_latents(seeds: list[int], z_dim: int) -> torch.Tensor:
    """[N, z_dim] latents, one RandomState per seed (as the reference's generate does)."""
    z = [np.random.RandomState(s).randn(1, z_dim) for s in seeds]
    return torch.from_numpy(np.concatenate(z)).float()


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


def to_uint(img: torch.Tensor, bits: int = 8) -> np.ndarray:
    """[-1, 1] floats -> uint8 (0..255) or uint16 (0..65535), same shape."""
    top = 255 if bits == 8 else 65535
    x = ((img.float() + 1) * (top / 2)).round().clamp(0, top)
    return x.numpy().astype(np.uint8 if bits == 8 else np.uint16)


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


def to_hu(img: torch.Tensor, mapping: dict) -> np.ndarray:
    """[-1, 1] floats -> float32 HU with the dataset's linear pixel mapping {"lo", "hi"}."""
    x = (img.float().clamp(-1, 1) + 1) / 2
    return (mapping["lo"] + x * (mapping["hi"] - mapping["lo"])).numpy().astype(np.float32)


def save_png(arr: np.ndarray, path: str) -> None:
    """Save [R, R] uint8 as L or uint16 as I;16."""
    if arr.dtype == np.uint16:
        h, w = arr.shape
        Image.frombytes("I;16", (w, h), arr.astype("<u2").tobytes()).save(path, format="PNG")
    else:
        Image.fromarray(arr.astype(np.uint8)).save(path, format="PNG")


def nifti_affine(spacing: tuple[float, float] | None) -> np.ndarray:
    """Voxel -> mm for [X = column, Y = row, 1]; 1 mm voxels when the spacing is unknown."""
    affine = np.eye(4)
    if spacing is not None:
        affine[0, 0], affine[1, 1] = spacing[1], spacing[0]
    return affine


def save_nifti(
    hu: np.ndarray,
    path: str,
    window: dict | None = None,
    spacing: tuple[float, float] | None = None,
) -> None:
    """One axial slice as [X, Y, 1] (x = image column, y = image row): float32 HU, or a uint8
    label map; `spacing` (row, column mm) goes into the affine, else 1 mm voxels."""
    import nibabel as nib

    data = np.ascontiguousarray(hu.T[:, :, None])
    nii = nib.Nifti1Image(data, nifti_affine(spacing))
    nii.header.set_xyzt_units("mm")
    nii.header["descrip"] = b"MedSynth SYNTHETIC image (generated; not a patient scan)"
    if window:
        nii.header["cal_min"], nii.header["cal_max"] = window["lo"], window["hi"]
    nib.save(nii, path)


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


def _hu_override(text: str | None) -> dict | None:
    if not text:
        return None
    try:
        lo, hi = (float(v) for v in text.split(","))
    except ValueError as e:
        raise ValueError(f"--hu expects LO,HI, got {text!r}") from e
    return {"lo": lo, "hi": hi, "source": "--hu"}


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
    mapping = _hu_override(args.hu) or info.get("hu_mapping")
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
