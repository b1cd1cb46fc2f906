"""`generate` with explicit latents (`--z`), labels (`--c`), noise modes and raw output.

`--format npy` writes `images.npy`: the generator's float32 output `[N, C, R, R]` exactly as it
comes out, before any windowing or rounding, so that a figure can be reproduced bit for bit and
an imported checkpoint compared with the reference's own output. With `--z` the latents are
read from a float32 `[N, z_dim]` .npy file instead of being drawn from seeds; `--c` gives
`[N, c_dim]` labels (or `--class K` one class for all). Noise: 'const' (the generator's fixed
noise, the default), 'random' (drawn from the seed `--noise-seed`), 'none'.
"""

from __future__ import annotations

import os

import numpy as np
import torch

from trainer import generate_io as gio


def _load_array(path: str, what: str, cols: int) -> np.ndarray:
    try:
        arr = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise ValueError(f"{what} {path}: not a readable .npy array ({e})") from e
    if arr.ndim != 2 or arr.shape[1] != cols or not np.issubdtype(arr.dtype, np.floating):
        raise ValueError(f"{what} {path}: need float [N, {cols}], not {arr.dtype} {arr.shape}")
    if not np.isfinite(arr).all():
        raise ValueError(f"{what} {path}: holds NaN or infinity")
    return arr.astype(np.float32)


def latents_and_labels(args, G) -> tuple[torch.Tensor, torch.Tensor | None, list[str]]:
    """z `[N, z_dim]`, c `[N, c_dim]` or None, and a file stem per sample."""
    if args.z:
        if args.seeds:
            raise ValueError("give --seeds or --z, not both")
        z = torch.from_numpy(_load_array(args.z, "--z", G.z_dim))
        stems = [f"z{i:04d}" for i in range(len(z))]
    elif args.seeds:
        seeds = gio.parse_seeds(args.seeds)
        z, stems = gio.seed_latents(seeds, G.z_dim), [f"seed{s:04d}" for s in seeds]
    else:
        raise ValueError("give --seeds or --z FILE.npy")
    return z, _labels(args, G, len(z)), stems


def _labels(args, G, n: int) -> torch.Tensor | None:
    if G.c_dim == 0:
        if args.c or args.class_idx is not None:
            raise ValueError("this generator is unconditional: --class and --c do not apply")
        return None
    if args.c:
        if args.class_idx is not None:
            raise ValueError("give --class or --c, not both")
        c = torch.from_numpy(_load_array(args.c, "--c", G.c_dim))
        if len(c) != n:
            raise ValueError(f"--c has {len(c)} rows for {n} latents")
        return c
    if args.class_idx is None:
        raise ValueError(f"this generator is conditional: pass --class 0..{G.c_dim - 1} or --c")
    if not 0 <= args.class_idx < G.c_dim:
        raise ValueError(f"--class must be in 0..{G.c_dim - 1}")
    return torch.nn.functional.one_hot(torch.full([n], args.class_idx), G.c_dim).float()


@torch.no_grad()
def synthesize_raw(G, z, c, psi: float, noise_mode: str, noise_seed: int, device, batch: int):
    """G's float32 output `[N, C, R, R]` on the CPU, in batches."""
    if noise_mode == "random":
        torch.manual_seed(noise_seed)
    out = []
    for i in range(0, len(z), batch):
        cc = None if c is None else c[i : i + batch].to(device)
        img = G(z[i : i + batch].to(device), cc, truncation_psi=psi, noise_mode=noise_mode)
        out.append(img.float().cpu())
    return torch.cat(out) if out else torch.zeros([0, G.img_channels, G.img_resolution] * 2)


def run_generate_raw(args) -> int:
    """`generate` for --z/--c, a noise mode other than const, or --format npy."""
    from trainer.distributed import pick_device
    from trainer.snapshot import load_generator

    device = pick_device(args.device)
    G, info = load_generator(args.snapshot, device, ema=not args.raw, return_info=True)
    z, c, stems = latents_and_labels(args, G)
    mapping = gio.hu_override(args.hu) or info.get("hu_mapping")
    if args.format == "nifti" and mapping is None:
        raise ValueError("this snapshot has no HU mapping; pass --hu LO,HI or use png/npy")
    imgs = synthesize_raw(G, z, c, args.trunc, args.noise_mode, args.noise_seed, device, args.batch)
    os.makedirs(args.outdir, exist_ok=True)
    if args.format == "npy":
        np.save(os.path.join(args.outdir, "images.npy"), imgs.numpy().astype(np.float32))
        return len(imgs)
    for stem, img in zip(stems, imgs[:, 0], strict=True):
        base = os.path.join(args.outdir, stem)
        if args.format == "nifti":
            gio.save_nifti(gio.to_hu(img, mapping), base + ".nii.gz", mapping)
        else:
            gio.save_png(gio.to_uint(img, 16 if args.format == "png16" else 8), base + ".png")
    return len(imgs)
