"""Samples/s of the FID pipeline (generate -> uint8 -> Inception-v3 features) and the projected
time of FID-10k at 256^2. Prints one JSON line.

The generator is the real `auto` configuration (random weights: speed does not depend on
them). Inception uses the pretrained weights when they are in the torch hub cache, else the
same architecture with random weights (same cost), and says which.

    python bench/metrics_speed.py [--device cpu|cuda] [--res 256] [--batch 4] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from trainer.metrics.estimate import images_per_second, random_inception  # noqa: E402
from trainer.metrics.inputs import to_uint8  # noqa: E402
from trainer.metrics.weights import check_weights, no_downloads  # noqa: E402
from trainer.networks import Generator  # noqa: E402

FID_NUM = 10000


def auto_generator(res: int, device: torch.device) -> Generator:
    """The `auto` preset's generator at `res` (channel_base 16384 below 512^2, mapping 2)."""
    base = 32768 if res >= 512 else 16384
    G = Generator(z_dim=512, w_dim=512, img_resolution=res, img_channels=1, channel_base=base,
                  channel_max=512, mapping_layers=2)  # fmt: skip
    return G.to(device).eval().requires_grad_(False)


def inception(device: torch.device, batch: int):
    """(extractor, weights description): pretrained if present, else random weights."""
    if check_weights(["fid"]):
        return random_inception(device), "random (pretrained weights absent; same cost)"
    from torch_fidelity.utils import create_feature_extractor

    with no_downloads():
        fe = create_feature_extractor("inception-v3-compat", ["2048"], cuda=device.type == "cuda",
                                      verbose=False)  # fmt: skip
    return fe, "pretrained (weights-inception-2015-12-05-6726825d.pth)"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    p.add_argument("--res", type=int, default=256)
    p.add_argument("--batch", type=int, help="default 4 on CPU, 64 on CUDA")
    p.add_argument("--samples", type=int, help="images per timed pass (default: one batch)")
    p.add_argument("--repeats", type=int, default=3, help="timed passes; the median is kept")
    args = p.parse_args()
    device = torch.device(args.device)
    batch = args.batch or (64 if device.type == "cuda" else 4)
    n = args.samples or batch
    G = auto_generator(args.res, device)
    fe, weights = inception(device, batch)
    z = torch.randn([n, G.z_dim], device=device)
    imgs = torch.cat(
        [to_uint8(G(z[i : i + batch], noise_mode="const")) for i in range(0, n, batch)]
    )
    rgb = imgs.expand(-1, 3, -1, -1).contiguous()  # [n, 3, R, R] uint8

    def generate(k: int) -> None:
        for i in range(0, k, batch):
            to_uint8(G(z[i : min(i + batch, k)], noise_mode="const"))

    def features(k: int) -> None:
        for i in range(0, k, batch):
            fe(rgb[i : min(i + batch, k)])

    with torch.no_grad():
        g = images_per_second(generate, n, device, 0, args.repeats)  # warmed up above
        f = images_per_second(features, n, device, 1, args.repeats)
    pipeline = 1 / (1 / g + 1 / f)
    print(json.dumps({
        "bench": "metrics_speed", "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda"
        else (platform.processor() or platform.machine()),
        "cpu_threads": torch.get_num_threads(), "cpu_count": os.cpu_count(), "res": args.res,
        "batch": batch, "samples_timed": n, "repeats": args.repeats, "generator_img_s": round(g, 3),
        "inception_img_s": round(f, 3), "pipeline_img_s": round(pipeline, 3),
        "inception_weights": weights,
        f"fid{FID_NUM // 1000}k_projected_s": round(FID_NUM / pipeline, 1),
        "projection": f"{FID_NUM} generated at {args.res}^2 + their features; real features "
        "cached after the first run",
        "torch": torch.__version__,
    }))  # fmt: skip


if __name__ == "__main__":
    main()
