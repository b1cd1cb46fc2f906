"""`python -m trainer metrics plan`: what a metrics run can do on this machine before it is
started: which metrics can run (weights present) and why not, whether CUDA exists, and the
measured time of each stage for a ladder of sample counts, with the largest count that fits a
time budget. One JSON object; the web app builds its form from it."""

from __future__ import annotations

import argparse
import json
import sys

import torch

from trainer.metrics.estimate import probe_rates, seconds_from_rates
from trainer.metrics.evaluate import ALL_METRICS, parse_metrics

LADDER = (50, 100, 200, 500, 1000, 2000, 5000, 10000)
# which metrics each estimated stage serves (a stage is paid once, shared)
STAGE_USERS = {
    "generate": ("fid", "kid", "pr", "memorization", "c2st"),
    "features": ("fid", "kid", "memorization"),
    "kid": ("kid",), "pr_features": ("pr",), "memorization": ("memorization",),
    "ppl": ("ppl",), "c2st": ("c2st",),
}  # fmt: skip


def add_arguments(p: argparse.ArgumentParser) -> None:
    a = p.add_argument
    a("--snapshot", required=True)
    a("--data", required=True)
    a("--metrics", default=",".join(ALL_METRICS))
    a("--device", choices=["cpu", "cuda", "auto"], default="auto")
    a("--batch", type=int)
    a("--budget-s", type=float, default=300.0, help="time the suggested count should fit")
    a("--num", type=int, action="append", default=[], help="also estimate this count")
    a("--feature-extractor")
    a("--extractor-module", metavar="MODULE[:FUNCTION]", help="as for `metrics`")


def plan(args: argparse.Namespace) -> dict:
    from trainer.dataset import load_dataset
    from trainer.distributed import pick_device
    from trainer.metrics.compute import plan_weights
    from trainer.metrics.extractor_module import load_extractor_module
    from trainer.snapshot import load_generator

    args.feature_extractor = load_extractor_module(args.extractor_module, args.feature_extractor)
    requested = parse_metrics(args.metrics)
    runnable, skipped, ncc_only = plan_weights(requested, args.feature_extractor, verify=False)
    dev = pick_device(args.device)
    batch = args.batch or (64 if dev.type == "cuda" else 16)
    G = load_generator(args.snapshot, dev)
    ds = load_dataset(args.data)
    n_real = ds.num_images
    metrics = set(runnable)
    rates = probe_rates(G, dev, batch, metrics, min(n_real, 5000), args.feature_extractor,
                        not ncc_only)  # fmt: skip
    estimates = {}
    for num in sorted(set(LADDER) | set(args.num)):
        parts = seconds_from_rates(rates, metrics, num, num, n_real, G.img_resolution,
                                   c2st_n=min(n_real, num, 5000),
                                   feature_extractor=args.feature_extractor,
                                   memorization_features=not ncc_only)  # fmt: skip
        estimates[str(num)] = {"total_s": round(sum(parts.values()), 2),
                               "parts": {k: round(v, 2) for k, v in parts.items()}}  # fmt: skip
    fitting = [int(n) for n, e in estimates.items() if e["total_s"] <= args.budget_s]
    info = {}
    for m in requested:
        note = "pixel NCC only: the Inception weights are missing" if (
            m == "memorization" and ncc_only) else None  # fmt: skip
        info[m] = {"runnable": m not in skipped, "reason": skipped.get(m), "note": note}
    from trainer.metrics.weights import checkpoint_dir

    return {
        "device": dev.type, "cuda_available": torch.cuda.is_available(),
        "weights_folder": checkpoint_dir(),
        "resolution": G.img_resolution, "n_real": n_real, "batch": batch,
        "metrics": info, "rates": rates, "stage_users": STAGE_USERS,
        "budget_s": args.budget_s, "suggested_num": max(fitting) if fitting else min(LADDER),
        "estimates": estimates,
    }  # fmt: skip


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="python -m trainer metrics plan")
    add_arguments(p)
    args = p.parse_args(argv)
    try:
        out = plan(args)
    except Exception as e:  # noqa: BLE001 - one line for the app, whatever went wrong
        print(f"error: {type(e).__name__}: {e}", file=sys.stderr)
        return 2
    rates = out["rates"]
    out["rates"] = {k: (None if v == float("inf") else v) for k, v in rates.items()}
    print(json.dumps(out))
    return 0
