"""Computing a snapshot's metrics (`compute_metrics`) and the weights they need
(`plan_weights`); the package re-exports both, and `metrics`/`metrics-plan` import them
from here."""

from __future__ import annotations

import math
import os
import platform
import time

import torch

from trainer.metrics.estimate import estimate_seconds
from trainer.metrics.evaluate import (
    ALL_METRICS,
    Log,
    Options,
    evaluate,
    parse_metrics,
)
from trainer.metrics.inputs import Progress, real_uint8
from trainer.metrics.weights import (
    MissingWeightsError,
    availability,
    check_weights,
    weights_identity,
)


def compute_metrics(
    snapshot_path: str,
    data_zip: str,
    metrics=ALL_METRICS,
    num: int = 10000,
    device: str = "cpu",
    feature_extractor: str | None = None,
    progress: Progress | None = None,
    batch: int | None = None,
    *,
    log: Log | None = None,
    estimate: bool = True,
    **options,
) -> dict:
    """Metrics of a snapshot's G_ema against the dataset it was trained on, as a JSON-ready
    dict. Each metric runs on its own: one whose pretrained weights are absent is listed under
    "skipped" with the reason (memorisation falls back to pixel NCC without Inception), one
    that fails is listed under "errors", and the others are computed. Raises
    MissingWeightsError (before any work) only when no requested metric can run."""
    from trainer.dataset import DatasetError, load_dataset
    from trainer.distributed import pick_device
    from trainer.snapshot import SnapshotError, load_generator

    t0 = time.perf_counter()
    dev = pick_device(device)
    requested = parse_metrics(metrics)
    if not os.path.isfile(snapshot_path):
        raise SnapshotError(f"snapshot not found: {snapshot_path}")
    if not os.path.isfile(data_zip):
        raise DatasetError(f"dataset zip not found: {data_zip}")
    runnable, skipped, ncc_only = plan_weights(requested, feature_extractor)
    if not runnable:  # before any model is built
        raise MissingWeightsError(check_weights(requested, feature_extractor))
    options.setdefault("memorization_features", not ncc_only)
    opts = Options(metrics=runnable, num=num, feature_extractor=feature_extractor,
                   batch=batch or (64 if dev.type == "cuda" else 16), **options)  # fmt: skip
    if log and skipped:
        log("skipped: " + "; ".join(f"{m} ({why})" for m, why in skipped.items()))
    G, info = load_generator(snapshot_path, dev, return_info=True)
    ds = load_dataset(data_zip)
    if ds.resolution != G.img_resolution:
        raise ValueError(f"the snapshot makes {G.img_resolution}x{G.img_resolution} images but "
                         f"{data_zip} holds {ds.resolution}x{ds.resolution}")  # fmt: skip
    real = real_uint8(ds.images, ds.bits)
    est = None
    if estimate:
        est = estimate_seconds(G, set(opts.metrics), opts.num, opts.ppl_num or opts.num,
                               len(real), dev, opts.batch, opts.kid_subsets,
                               min(len(real), opts.num, 5000), feature_extractor,
                               opts.c2st_folds, opts.c2st_epochs,
                               opts.memorization_features)  # fmt: skip
        if log:
            log(_estimate_line(est, dev))
    errors: dict[str, str] = {}
    results, timings = evaluate(G, real, opts, device=dev, labels=ds.labels,
                                real_names=list(ds.names), progress=progress, log=log,
                                errors=errors)  # fmt: skip
    timings["total_s"] = round(time.perf_counter() - t0, 3)
    return {
        "snapshot": snapshot_path, "kimg": info.get("kimg"), "data": data_zip,
        "dataset": {"num_images": ds.num_images, "resolution": ds.resolution, "bits": ds.bits,
                    "labels": ds.labels is not None,
                    "dataset_id": ds.provenance.get("dataset_id"),
                    "content_hash": ds.provenance.get("content_hash")},
        "options": opts.as_dict() | {"device": str(dev)},
        "environment": _environment(opts, dev),
        "requested": list(requested), "metrics": results, "skipped": skipped,
        "errors": errors, "timings": timings,
        "estimate_s": None if est is None else round(est["total_s"], 1),
        "notes": _notes(results, ds.num_images, ncc_only),
    }  # fmt: skip


def plan_weights(
    metrics: tuple[str, ...], feature_extractor: str | None = None, verify: bool = True
) -> tuple[tuple[str, ...], dict[str, str], bool]:
    """(metrics that can run, {metric: why it cannot}, memorisation on pixel NCC only).

    Memorisation needs Inception only for its feature distances; without the weights it runs
    on pixel NCC (the copy criterion itself) and says so."""
    missing = availability(metrics, feature_extractor, verify)
    skipped, ncc_only = {}, False
    for m, files in missing.items():
        if not files:
            continue
        if m == "memorization":
            ncc_only = True
            continue
        names = ", ".join(f.file.name for f in files)
        skipped[m] = f"needs {names} ({files[0].problem}) in {files[0].folder}"
    return tuple(m for m in metrics if m not in skipped), skipped, ncc_only


def _estimate_line(est: dict, dev: torch.device) -> str:
    from trainer.metrics.estimate import format_duration

    parts = ", ".join(f"{k} {format_duration(v)}" for k, v in est["parts"].items())
    r = est["rates"]
    rates = f"generator {r['generator_img_s']:.2f} img/s"
    if math.isfinite(r["extractor_img_s"]):
        rates += f", feature extractor {r['extractor_img_s']:.1f} img/s"
    return f"estimate on {dev.type}: about {format_duration(est['total_s'])} ({parts}; {rates})"


def _environment(opts: Options, dev: torch.device) -> dict:
    import torch_fidelity

    from trainer.metrics.fidelity import extractor_for

    extractors = {}  # metric -> the torch-fidelity extractor and layer it used
    for metric in ("fid", "kid", "pr", "memorization"):
        if metric in opts.metrics:
            name, layer = extractor_for("fid" if metric == "memorization" else metric,
                                        opts.feature_extractor)  # fmt: skip
            extractors[metric] = {"name": name, "layer": layer}
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else platform.processor()
    return {
        "torch_fidelity": torch_fidelity.__version__, "torch": torch.__version__,
        "device": str(dev), "device_name": name or platform.machine(),
        "threads": torch.get_num_threads(), "feature_extractors": extractors,
        "weights": weights_identity(opts.metrics, opts.feature_extractor),
    }  # fmt: skip


def _notes(results: dict, n_real: int, ncc_only: bool = False) -> list[str]:
    """Plain-language caveats the web page shows next to the numbers."""
    notes = []
    if ncc_only and "memorization" in results:
        notes.append(
            "Memorisation used pixel NCC only: the Inception weights are missing, so there "
            "are no feature distances (the copy criterion, NCC ≥ threshold, is unchanged)."
        )
    if "fid" in results and n_real < 5000:
        notes.append(
            f"FID against {n_real} real images is biased upward and depends on the "
            "sample sizes: compare runs only at equal num and dataset; KID (unbiased) "
            "and the relative FD are the better guides for small datasets."
        )
    if "ppl" in results:
        notes.append(f"PPL is {results['ppl']['variant']}: {results['ppl']['description']}.")
    if "c2st" in results:
        notes.append(
            "C2ST accuracy near 50% (interval containing 0.5) means the classifier "
            "cannot tell generated from real slices; near 100% means it always can."
        )
    return notes
