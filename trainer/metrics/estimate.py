"""How long a metrics run will take, measured on this machine before it starts: a few
generator samples, a few images through an Inception-v3 of the real architecture (random
weights, so no download) and a few training steps of the C2ST classifier, then the known cost
ratios of the other networks. C2ST is counted in steps, not images: small data sets train for
at least MIN_STEPS steps per fold (the old per-image guess said 3 s for a run that took 30 s)."""

from __future__ import annotations

import math
import os
import statistics
import tempfile
import time

import torch
from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

VGG16_VS_INCEPTION = 2.7  # FLOPs of VGG16 at 224^2 over Inception-v3 at 299^2 (15.5 / 5.7)
KID_SUBSET_S = 0.3  # one 1000-sample polynomial-kernel MMD in NumPy, 2 CPU cores
NCC_FLOPS = {"cpu": 5e9, "cuda": 5e11}  # float64 matmul of the pixel correlations


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
def images_per_second(
    fn, n: int, device: torch.device, warmup: int = 1, repeats: int = 1, min_s: float = 0.3
) -> float:
    """Throughput of `fn(n)` (which processes n images) after `warmup` untimed calls: all
    images over all time of at least `repeats` calls and `min_s` seconds, so one preempted
    call on a busy machine moves the figure as much as it moves a real run, no more."""
    for _ in range(warmup):
        fn(n)
    calls, elapsed = 0, 0.0
    while calls < repeats or elapsed < min_s:
        _sync(device)
        t0 = time.perf_counter()
        fn(n)
        _sync(device)
        elapsed += time.perf_counter() - t0
        calls += 1
    return calls * n / max(elapsed, 1e-9)


def generator_rate(
    G: torch.nn.Module, device: torch.device, probe: int, batch: int | None = None
) -> float:
    """Images/s of G at the run's `batch` (default `probe`), timed at that batch itself:
    extrapolating from a smaller probe was off by up to 10x on a busy machine, where the
    fixed per-call cost and the per-image cost cannot be told apart reliably."""
    n = batch or probe
    c = torch.zeros([n, G.c_dim], device=device) if G.c_dim else None
    z = torch.randn([n, G.z_dim], device=device)
    return images_per_second(lambda k: G(z[:k], None if c is None else c[:k],
                                         noise_mode="const"), n, device, warmup=2,
                             min_s=1.0)  # fmt: skip  # a second smooths out scheduling noise


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


def c2st_step_seconds(batch: int, size: int, device: torch.device, steps: int = 6) -> float:
    """Seconds per training step of the C2ST classifier, measured as C2ST runs it (one CPU
    thread, Adam, the real network) after one untimed step."""
    from torch import nn

    from trainer.metrics.c2st import SmallCNN, _single_thread

    with _single_thread(device), torch.random.fork_rng(devices=[]):
        model = SmallCNN(1).to(device)
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        x = torch.randn([batch, 1, size, size], device=device)
        y = torch.ones([batch], device=device)

        def step() -> None:
            loss = nn.functional.binary_cross_entropy_with_logits(model(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

        step()  # untimed: first-call allocations
        times = []
        for _ in range(steps):
            _sync(device)
            t0 = time.perf_counter()
            step()
            _sync(device)
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


def c2st_steps(n_per_side: int, folds: int, epochs: int, batch: int = 32) -> int:
    """Training steps of a whole C2ST: every fold trains on (folds-1)/folds of 2n images for
    `epochs`, but at least MIN_STEPS steps (small data sets train longer)."""
    from trainer.metrics.c2st import MIN_STEPS

    n_train = 2 * n_per_side * (folds - 1) // folds
    per_epoch = max(1, math.ceil(n_train / batch))
    return folds * max(epochs, math.ceil(MIN_STEPS / per_epoch)) * per_epoch


def probe_rates(
    G: torch.nn.Module,
    device: torch.device,
    batch: int,
    metrics: set[str],
    c2st_n: int = 0,
    feature_extractor: str | None = None,
    memorization_features: bool = True,
) -> dict:
    """The measured speeds every estimate is computed from (one probe per run)."""
    probe = min(batch, 8 if device.type == "cuda" else 2)
    rates = {"generator_img_s": generator_rate(G, device, probe, batch),
             "extractor_img_s": float("inf"),
             "c2st_step_s": 0.0, "device": device.type}  # fmt: skip
    featured = {"fid", "kid", "pr", "ppl"} | ({"memorization"} if memorization_features else set())
    if metrics & featured:
        rates["extractor_img_s"] = extractor_rate(G.img_resolution, device, probe,
                                                  feature_extractor)  # fmt: skip
    if "c2st" in metrics and c2st_n:
        from trainer.metrics.c2st import C2ST_RESOLUTION

        n_train = max(1, 2 * c2st_n * 4 // 5)
        mean_batch = round(n_train / math.ceil(n_train / 32))  # e.g. 44 images: 32 + 12
        size = min(C2ST_RESOLUTION, G.img_resolution)
        rates["c2st_step_s"] = c2st_step_seconds(mean_batch, size, device)
    return rates


def seconds_from_rates(
    rates: dict,
    metrics: set[str],
    num: int,
    ppl_num: int,
    n_real: int,
    resolution: int,
    kid_subsets: int = 100,
    c2st_n: int = 0,
    c2st_folds: int = 5,
    c2st_epochs: int = 15,
    feature_extractor: str | None = None,
    memorization_features: bool = True,
) -> dict[str, float]:
    """Seconds per stage for these settings, from measured rates (cheap: no probing)."""
    g, inc = rates["generator_img_s"], rates["extractor_img_s"]
    parts: dict[str, float] = {}
    if metrics & {"fid", "kid", "pr", "memorization", "c2st"}:
        parts["generate"] = num / g
    featured = {"fid", "kid", "memorization"} if memorization_features else {"fid", "kid"}
    if metrics & featured:
        parts["features"] = (num + n_real * (2 if "fid" in metrics else 1)) / inc
    if "kid" in metrics:
        parts["kid"] = kid_subsets * KID_SUBSET_S * (min(1000, num, n_real) / 1000) ** 2
    if "pr" in metrics:
        cost = VGG16_VS_INCEPTION if feature_extractor is None else 1.0
        parts["pr_features"] = (num + n_real) * cost / inc
    if "memorization" in metrics:  # [num, D] @ [D, n_real], D = min(R, 128)^2
        flops = NCC_FLOPS["cuda" if rates.get("device") == "cuda" else "cpu"]
        parts["memorization"] = 2 * num * n_real * min(resolution, 128) ** 2 / flops
    if "ppl" in metrics:
        lpips_cost = VGG16_VS_INCEPTION * (min(resolution, 256) / 224) ** 2
        parts["ppl"] = 2 * ppl_num / g + 2 * ppl_num * lpips_cost / inc
    if "c2st" in metrics and c2st_n:
        parts["c2st"] = c2st_steps(c2st_n, c2st_folds, c2st_epochs) * rates["c2st_step_s"]
    return parts


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
    c2st_folds: int = 5,
    c2st_epochs: int = 15,
    memorization_features: bool = True,
) -> dict:
    """{"total_s", "parts": {stage: seconds}, "rates"}: rough; a short probe on a busy
    machine can be off by a few times either way. `c2st_images` is per side."""
    rates = probe_rates(G, device, batch, metrics, c2st_images, feature_extractor,
                        memorization_features)  # fmt: skip
    parts = seconds_from_rates(rates, metrics, num, ppl_num, n_real, G.img_resolution,
                               kid_subsets, c2st_images, c2st_folds, c2st_epochs,
                               feature_extractor, memorization_features)  # fmt: skip
    return {"total_s": sum(parts.values()), "parts": parts, "rates": rates}


def format_duration(seconds: float) -> str:
    seconds = int(round(seconds))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h} h {m:02d} min" if h else (f"{m} min {s:02d} s" if m else f"{s} s")
