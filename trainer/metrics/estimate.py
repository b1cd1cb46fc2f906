"""How long a metrics run will take, measured on this machine before it starts: a few
generator samples and a few images through an Inception-v3 of the real architecture (random
weights, so no download), then the known cost ratios of the other networks."""

from __future__ import annotations

import os
import statistics
import tempfile
import time

import torch
from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

VGG16_VS_INCEPTION = 2.7  # FLOPs of VGG16 at 224^2 over Inception-v3 at 299^2 (15.5 / 5.7)
KID_SUBSET_S = 0.3  # one 1000-sample polynomial-kernel MMD in NumPy, 2 CPU cores


class RandomInceptionV3(FeatureExtractorInceptionV3):
    """torch-fidelity's Inception-v3 with random weights: the same cost, for timing only."""

    def load_state_dict(self, state_dict, strict=True, assign=False):
        return None  # keep the random initialisation


def random_inception(device: torch.device, features: tuple[str, ...] = ("2048",)):
    with tempfile.TemporaryDirectory() as tmp:
        empty = os.path.join(tmp, "empty.pth")
        torch.save({}, empty)
        fe = RandomInceptionV3("inception-v3-random", list(features),
                               feature_extractor_weights_path=empty)  # fmt: skip
    return fe.to(device).eval()


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@torch.no_grad()
def images_per_second(fn, n: int, device: torch.device, warmup: int = 1, repeats: int = 1) -> float:
    """Median throughput of `fn(n)` (which processes n images) after `warmup` untimed calls."""
    for _ in range(warmup):
        fn(n)
    rates = []
    for _ in range(repeats):
        _sync(device)
        t0 = time.perf_counter()
        fn(n)
        _sync(device)
        rates.append(n / max(time.perf_counter() - t0, 1e-9))
    return statistics.median(rates)


def generator_rate(G: torch.nn.Module, device: torch.device, batch: int) -> float:
    c = torch.zeros([batch, G.c_dim], device=device) if G.c_dim else None
    z = torch.randn([batch, G.z_dim], device=device)
    return images_per_second(lambda n: G(z[:n], None if c is None else c[:n],
                                         noise_mode="const"), batch, device)  # fmt: skip


def extractor_rate(
    resolution: int, device: torch.device, batch: int, feature_extractor: str | None = None
) -> float:
    """Images/s of the FID extractor: a random-weight Inception-v3 for the default (same
    cost, no weights needed), else the named torch-fidelity extractor itself."""
    if feature_extractor is None:
        fe = random_inception(device)
    else:
        from torch_fidelity.utils import create_feature_extractor

        from trainer.metrics.fidelity import extractor_for, tf_options
        from trainer.metrics.weights import no_downloads

        layer = extractor_for("fid", feature_extractor)[1]
        with no_downloads():
            fe = create_feature_extractor(feature_extractor, [layer],
                                          **tf_options(device, batch, 0, None))  # fmt: skip
    x = torch.randint(0, 256, [batch, 3, resolution, resolution], dtype=torch.uint8, device=device)
    return images_per_second(lambda n: fe(x[:n]), batch, device)


def estimate_seconds(
    G: torch.nn.Module,
    metrics: set[str],
    num: int,
    ppl_num: int,
    n_real: int,
    device: torch.device,
    batch: int,
    kid_subsets: int = 100,
    c2st_images: int = 0,
    feature_extractor: str | None = None,
) -> dict:
    """{"total_s", "parts": {stage: seconds}, "rates"}: rough; a short probe on a busy
    machine can be off by a few times either way."""
    probe = min(batch, 8 if device.type == "cuda" else 2)
    g = generator_rate(G, device, probe)
    needs_features = bool(metrics & {"fid", "kid", "pr", "memorization", "ppl"})
    inc = extractor_rate(G.img_resolution, device, probe, feature_extractor) if (
        needs_features) else float("inf")  # fmt: skip
    parts: dict[str, float] = {}
    if metrics & {"fid", "kid", "pr", "memorization", "c2st"}:
        parts["generate"] = num / g
    if metrics & {"fid", "kid", "memorization"}:
        parts["features"] = (num + n_real * (2 if "fid" in metrics else 1)) / inc
    if "kid" in metrics:
        parts["kid"] = kid_subsets * KID_SUBSET_S * (min(1000, num, n_real) / 1000) ** 2
    if "pr" in metrics:
        cost = VGG16_VS_INCEPTION if feature_extractor is None else 1.0
        parts["pr_features"] = (num + n_real) * cost / inc
    if "ppl" in metrics:
        lpips_cost = VGG16_VS_INCEPTION * (min(G.img_resolution, 256) / 224) ** 2
        parts["ppl"] = 2 * ppl_num / g + 2 * ppl_num * lpips_cost / inc
    if "c2st" in metrics:
        parts["c2st"] = c2st_images * 15 * 5 / (2000.0 if device.type == "cpu" else 20000.0)
    return {"total_s": sum(parts.values()), "parts": parts,
            "rates": {"generator_img_s": g, "extractor_img_s": inc}}  # fmt: skip


def format_duration(seconds: float) -> str:
    seconds = int(round(seconds))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h} h {m:02d} min" if h else (f"{m} min {s:02d} s" if m else f"{s} s")
