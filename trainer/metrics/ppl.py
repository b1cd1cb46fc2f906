"""Perceptual path length as StyleGAN2-ADA's `ppl2_wend`: interpolate in W, end-point
sampling (t = 0), eps = 1e-4, no crop, LPIPS-VGG16 (torch-fidelity's module), / eps^2, mean
after dropping values outside the 1st-99th percentiles.

torch-fidelity's own PPL interpolates in its z input and quantises images to uint8 (which
erases an eps = 1e-4 step), so only its LPIPS module is used here; our interpolation is in W,
images stay float in [0, 255], and synthesis runs in fp32 with constant noise.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import numpy as np
import torch

from trainer.metrics.inputs import Progress, one_hot, sample_classes
from trainer.metrics.weights import no_downloads

# (img0, img1) float [N, 3, H, W] in [0, 255] -> per-sample distance [N]
Similarity = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

LPIPS_RESOLUTION = 256  # StyleGAN2-ADA's PPL averages larger images down to 256^2


def variant_name(space: str, sampling: str) -> str:
    return f"ppl2_{space}{sampling}"


def lpips_similarity(resolution: int, device: torch.device) -> Similarity:
    """torch-fidelity's LPIPS-VGG16 on float images; inputs larger than 256^2 area-averaged."""
    from torch_fidelity import SampleSimilarityLPIPS

    resize = LPIPS_RESOLUTION if resolution > LPIPS_RESOLUTION else None
    with no_downloads():
        lpips = SampleSimilarityLPIPS(
            "lpips-vgg16", sample_similarity_resize=resize, sample_similarity_dtype=None
        )
    return lpips.eval().requires_grad_(False).to(device)


@contextlib.contextmanager
def fp32_synthesis(G: torch.nn.Module) -> Iterator[None]:
    """Switch off the generator's bf16 blocks: an eps-step difference would drown in bf16."""
    blocks = [m for m in G.modules() if getattr(m, "use_bf16", False)]
    for m in blocks:
        m.use_bf16 = False
    try:
        yield
    finally:
        for m in blocks:
            m.use_bf16 = True


def _to_rgb255(img: torch.Tensor) -> torch.Tensor:
    """[N, C, R, R] in [-1, 1] -> [N, 3, R, R] float in [0, 255], unquantised."""
    x = (img.float() + 1) * 127.5
    return x.repeat(1, 3, 1, 1) if x.shape[1] == 1 else x


def _filtered_mean(
    dist: np.ndarray, lo_pct: float = 1, hi_pct: float = 99
) -> tuple[float, float, int]:
    """Mean and std of the distances inside [lo, hi] percentiles, as the reference does."""
    lo = np.percentile(dist, lo_pct, method="lower")
    hi = np.percentile(dist, hi_pct, method="higher")
    kept = dist[(dist >= lo) & (dist <= hi)]
    return float(kept.mean()), float(kept.std()), int(kept.size)


@torch.no_grad()
def path_distances(
    G: torch.nn.Module,
    num: int,
    similarity: Similarity,
    *,
    epsilon: float = 1e-4,
    sampling: str = "end",
    batch: int = 16,
    device: str | torch.device = "cpu",
    seed: int = 0,
    labels: np.ndarray | None = None,
    progress: Progress | None = None,
) -> np.ndarray:
    """`[num]` values LPIPS(G(lerp(w0, w1, t)), G(lerp(w0, w1, t + eps))) / eps^2."""
    if sampling not in ("end", "full"):
        raise ValueError(f"PPL sampling must be 'end' or 'full', not {sampling!r}")
    gen = torch.Generator().manual_seed(seed)
    classes = sample_classes(G.c_dim, labels, num, seed)
    out = []
    for start in range(0, num, batch):
        n = min(batch, num - start)
        z = torch.randn([2 * n, G.z_dim], generator=gen).to(device)  # z0 and z1
        t = torch.rand([n], generator=gen) if sampling == "full" else torch.zeros([n])
        t = t.to(device).view(n, 1, 1)
        c = one_hot(None if classes is None else classes[start : start + n], G.c_dim, device)
        c2 = None if c is None else torch.cat([c, c])  # the same class at both ends
        w0, w1 = G.mapping(z, c2).chunk(2)  # [n, num_ws, w_dim] each
        ws = torch.cat([w0.lerp(w1, t), w0.lerp(w1, t + epsilon)])
        ch = getattr(G, "image_channels", G.img_channels)  # paired masks: the image only
        img = _to_rgb255(G.synthesis(ws, noise_mode="const")[:, :ch])  # [2n, 3, R, R]
        d = similarity(*img.chunk(2)).reshape(n).double() / epsilon**2
        out.append(d.cpu().numpy())
        if progress:
            progress("ppl", start + n, num)
    return np.concatenate(out)


def perceptual_path_length(
    G: torch.nn.Module,
    num: int,
    *,
    similarity: Similarity | None = None,
    epsilon: float = 1e-4,
    sampling: str = "end",
    batch: int = 16,
    device: str | torch.device = "cpu",
    seed: int = 0,
    labels: np.ndarray | None = None,
    progress: Progress | None = None,
) -> dict:
    """PPL of `G` (W space); `similarity` defaults to torch-fidelity's LPIPS-VGG16."""
    device = torch.device(device)
    sim_name = "lpips-vgg16 (torch-fidelity)"
    if similarity is None:
        similarity = lpips_similarity(G.img_resolution, device)
    else:
        sim_name = getattr(similarity, "name", type(similarity).__name__)
    with fp32_synthesis(G):
        dist = path_distances(
            G, num, similarity, epsilon=epsilon, sampling=sampling, batch=batch, device=device,
            seed=seed, labels=labels, progress=progress,
        )  # fmt: skip
    mean, std, kept = _filtered_mean(dist)
    return {
        "mean": mean, "std": std, "num": num, "num_kept": kept,
        "variant": variant_name("w", sampling),
        "description": f"W space, {'end-point (t=0)' if sampling == 'end' else 'uniform t'} "
        f"sampling, eps={epsilon:g}, no crop, {sim_name}, 1st-99th percentile mean",
        "space": "w", "sampling": sampling, "epsilon": epsilon, "crop": False,
        "similarity": sim_name, "seed": seed,
    }  # fmt: skip
