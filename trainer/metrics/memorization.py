"""For every generated sample, the nearest training image by pixel correlation and by
feature distance: the check the source study lacked when its generator copied tumour slices.

Copy threshold: a sample counts as a copy when its normalised cross-correlation (Pearson
correlation of the flattened, area-downsampled images) with some training image is >= 0.95.
Independent slices of the same organ rarely exceed ~0.9; a copy with light noise stays >0.95.
"""

from __future__ import annotations

import numpy as np
import torch

from trainer.metrics.inputs import downsample

COPY_THRESHOLD = 0.95
NCC_RESOLUTION = 128  # images are compared at min(R, 128)^2: copies stay copies, CPUs cope


def _unit_rows(x: torch.Tensor) -> torch.Tensor:
    """[N, ...] -> [N, D] zero-mean, unit-norm rows (a constant image becomes all zeros)."""
    x = x.flatten(1).double()
    x = x - x.mean(dim=1, keepdim=True)
    return x / x.norm(dim=1, keepdim=True).clamp_min(1e-12)


def nearest_by_ncc(
    generated: np.ndarray,
    real: np.ndarray,
    *,
    size: int | None = None,
    batch: int = 256,
    device: str | torch.device = "cpu",
) -> tuple[np.ndarray, np.ndarray]:
    """(index [M], correlation [M]) of each generated image's most correlated real image."""
    size = size or min(real.shape[-1], NCC_RESOLUTION)
    r = _unit_rows(downsample(real, size)).to(device)  # [N, D]
    idx, ncc = [], []
    for start in range(0, len(generated), batch):
        g = _unit_rows(downsample(generated[start : start + batch], size)).to(device)  # [B, D]
        best = (g @ r.T).max(dim=1)  # [B]
        idx.append(best.indices.cpu())
        ncc.append(best.values.cpu())
    return torch.cat(idx).numpy(), torch.cat(ncc).numpy()


def nearest_by_features(
    gen_features: torch.Tensor, real_features: torch.Tensor, batch: int = 1024
) -> tuple[np.ndarray, np.ndarray]:
    """(index [M], L2 distance [M]) of each generated feature vector's nearest real one."""
    real = real_features.double()
    idx, dist = [], []
    for chunk in gen_features.double().split(batch):
        best = torch.cdist(chunk, real).min(dim=1)
        idx.append(best.indices)
        dist.append(best.values)
    return torch.cat(idx).numpy(), torch.cat(dist).numpy()


def real_nn_distance(real_features: torch.Tensor) -> float | None:
    """Median distance from each real image to its nearest other real: the scale to read
    a generated sample's feature distance against."""
    if len(real_features) < 2:
        return None
    d = torch.cdist(real_features.double(), real_features.double())
    d.fill_diagonal_(float("inf"))
    return float(d.min(dim=1).values.median())


def memorization_report(
    generated: np.ndarray,
    real: np.ndarray,
    *,
    seeds: np.ndarray,
    classes: np.ndarray | None = None,
    real_names: list[str] | None = None,
    gen_features: torch.Tensor | None = None,
    real_features: torch.Tensor | None = None,
    threshold: float = COPY_THRESHOLD,
    top_k: int = 16,
    size: int | None = None,
    device: str | torch.device = "cpu",
) -> dict:
    """Copy share, the `top_k` most similar (sample, training image) pairs and per-sample
    nearest indices and similarities (pixel NCC; feature L2 when features are given)."""
    size = size or min(real.shape[-1], NCC_RESOLUTION)
    idx, ncc = nearest_by_ncc(generated, real, size=size, device=device)
    f_idx = f_dist = None
    if gen_features is not None and real_features is not None:
        f_idx, f_dist = nearest_by_features(gen_features, real_features)
    copies = ncc >= threshold
    order = np.argsort(-ncc, kind="stable")[:top_k]
    pairs = [_pair(int(i), idx, ncc, seeds, classes, real_names, f_idx, f_dist) for i in order]
    per_sample = {
        "seed": seeds.tolist(), "nearest_real": idx.tolist(),
        "ncc": np.round(ncc, 5).tolist(),
        "class": None if classes is None else classes.tolist(),
    }  # fmt: skip
    if f_idx is not None:
        per_sample["feature_nearest_real"] = f_idx.tolist()
        per_sample["feature_distance"] = np.round(f_dist, 5).tolist()
    return {
        "copy_threshold_ncc": threshold, "copy_share": float(copies.mean()),
        "num_copies": int(copies.sum()), "num_generated": len(ncc), "num_real": len(real),
        "ncc_resolution": size,
        "ncc_stats": {"mean": float(ncc.mean()), "median": float(np.median(ncc)),
                      "max": float(ncc.max())},
        "real_copied": sorted({int(j) for j in idx[copies]}),
        "feature_distance_real_nn_median": (
            None if real_features is None else real_nn_distance(real_features)),
        "top_pairs": pairs, "per_sample": per_sample,
    }  # fmt: skip


def _pair(i, idx, ncc, seeds, classes, names, f_idx, f_dist) -> dict:
    j = int(idx[i])
    pair = {
        "sample": i, "seed": int(seeds[i]),
        "class": None if classes is None else int(classes[i]),
        "real_index": j, "real_name": names[j] if names else None, "ncc": float(ncc[i]),
    }  # fmt: skip
    if f_idx is not None:
        pair["feature_real_index"] = int(f_idx[i])
        pair["feature_distance"] = float(f_dist[i])
    return pair
