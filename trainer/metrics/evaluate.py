"""One metrics run on an in-memory generator and dataset: generate once, then FID/KID/PR
(+ relative FD), memorisation, C2ST and PPL on those samples. The file-level API
(`compute_metrics`) and the training loop's `quick_fid_kid` both come through here."""

from __future__ import annotations

import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from trainer.metrics import fidelity
from trainer.metrics.c2st import c2st
from trainer.metrics.inputs import Progress, RGBImages, content_hash, generate_samples
from trainer.metrics.memorization import COPY_THRESHOLD, memorization_report
from trainer.metrics.ppl import perceptual_path_length

ALL_METRICS = ("fid", "kid", "pr", "ppl", "memorization", "c2st")
NEEDS_SAMPLES = {"fid", "kid", "pr", "memorization", "c2st"}
Log = Callable[[str], None]


@dataclass
class Options:
    """Everything a run can vary; stored with the results so a number can be reproduced."""

    metrics: tuple[str, ...] = ALL_METRICS
    num: int = 10000
    seed: int = 0
    batch: int = 16
    truncation_psi: float = 1.0
    feature_extractor: str | None = None
    kid_subsets: int = 100
    pr_k: int = 3
    ppl_num: int | None = None
    ppl_epsilon: float = 1e-4
    ppl_sampling: str = "end"
    copy_threshold: float = COPY_THRESHOLD
    top_k: int = 16
    memorization_features: bool = True
    c2st_folds: int = 5
    c2st_epochs: int = 15
    cache_root: str | None = field(default_factory=fidelity.default_cache_root)
    workdir: str | None = None

    def __post_init__(self) -> None:
        checks = {
            "num must be at least 2": self.num >= 2, "batch must be positive": self.batch >= 1,
            "ppl_sampling must be 'end' or 'full'": self.ppl_sampling in ("end", "full"),
            "copy_threshold must be in (0, 1]": 0 < self.copy_threshold <= 1,
            "c2st_folds must be at least 2": self.c2st_folds >= 2,
            "kid_subsets and pr_k must be positive": self.kid_subsets >= 1 and self.pr_k >= 1,
        }  # fmt: skip
        for message, ok in checks.items():
            if not ok:
                raise ValueError(message)

    def as_dict(self) -> dict:
        d = dict(self.__dict__)
        d["metrics"] = list(self.metrics)
        d["ppl_num"] = self.ppl_num or self.num
        return d


def parse_metrics(metrics) -> tuple[str, ...]:
    """'fid,kid' or an iterable -> validated names in canonical order."""
    names = metrics.split(",") if isinstance(metrics, str) else list(metrics)
    names = [n.strip().lower() for n in names if n.strip()]
    names = ["memorization" if n == "memorisation" else n for n in names]
    unknown = sorted(set(names) - set(ALL_METRICS))
    if unknown or not names:
        raise ValueError(f"unknown metric(s) {', '.join(unknown) or '(none)'}; "
                         f"choose from {','.join(ALL_METRICS)}")  # fmt: skip
    return tuple(m for m in ALL_METRICS if m in names)


class _Run:
    """The stages of one run; generated samples are made once, on first use, and shared."""

    def __init__(self, G, real, opts: Options, device, labels, real_names, progress, workdir):
        self.G, self.real, self.opts, self.device = G, real, opts, device
        self.labels, self.real_names = labels, real_names
        self.progress, self.workdir = progress, workdir
        cache = opts.cache_root
        self.real_name = f"medsynth-real-{content_hash(real)[:24]}" if cache else None
        reuse = cache and opts.memorization_features and "memorization" in opts.metrics
        # generated features are cached only to hand them from FID/KID to memorisation
        self.gen_name = f"medsynth-gen-{uuid.uuid4().hex[:16]}" if reuse else None
        self.common = dict(device=device, batch=opts.batch, seed=opts.seed, cache_root=cache,
                           feature_extractor=opts.feature_extractor)  # fmt: skip
        self._samples = None

    @property
    def samples(self):
        if self._samples is None:
            o = self.opts
            self._samples = generate_samples(
                self.G, o.num, seed=o.seed, device=self.device, batch=o.batch, labels=self.labels,
                truncation_psi=o.truncation_psi, workdir=self.workdir, progress=self.progress,
            )  # fmt: skip
        return self._samples

    def generate(self) -> dict:
        _ = self.samples  # timed as a stage of its own
        return {}

    def fidelity(self) -> dict:
        """FID/KID/PR through calculate_metrics, then the real-halves FID for the relative FD."""
        gen, real = RGBImages(self.samples.images), RGBImages(self.real)
        out = fidelity.fidelity_metrics(
            gen, real, set(self.opts.metrics), kid_subsets=self.opts.kid_subsets,
            pr_k=self.opts.pr_k, real_cache_name=self.real_name,
            generated_cache_name=self.gen_name, **self.common,
        )  # fmt: skip
        if "fid" in out:
            halves = fidelity.real_halves_fid(real, real_cache_name=self.real_name, **self.common)
            fid = out["fid"]
            fid.update(real_halves=halves, relative=fidelity.relative_fd(fid["value"], halves),
                       num_generated=len(gen), num_real=len(real))  # fmt: skip
        return out

    def memorization(self) -> dict:
        o, gen_f, real_f, name, layer = self.opts, None, None, None, None
        if o.memorization_features:  # the FID features, reused from torch-fidelity's cache
            name, layer = fidelity.extractor_for("fid", o.feature_extractor)
            kw = dict(name=name, layer=layer, device=self.device, batch=o.batch,
                      cache_root=o.cache_root)  # fmt: skip
            gen_f = fidelity.extract_features(
                RGBImages(self.samples.images), cache_name=self.gen_name, **kw)  # fmt: skip
            real = RGBImages(self.real)
            real_f = fidelity.extract_features(real, cache_name=self.real_name, **kw)
        report = memorization_report(
            self.samples.images, self.real, seeds=self.samples.seeds, classes=self.samples.classes,
            real_names=self.real_names, gen_features=gen_f, real_features=real_f,
            threshold=o.copy_threshold, top_k=o.top_k, device=self.device,
        )  # fmt: skip
        report["feature_extractor"], report["feature_layer"] = name, layer
        return {"memorization": report}

    def c2st(self) -> dict:
        o = self.opts
        return {"c2st": c2st(self.real, self.samples.images, folds=o.c2st_folds,
                             epochs=o.c2st_epochs, seed=o.seed, device=self.device,
                             progress=self.progress)}  # fmt: skip

    def ppl(self) -> dict:
        o = self.opts
        return {"ppl": perceptual_path_length(
            self.G, o.ppl_num or o.num, epsilon=o.ppl_epsilon, sampling=o.ppl_sampling,
            batch=o.batch, device=self.device, seed=o.seed, labels=self.labels,
            progress=self.progress,
        )}  # fmt: skip

    def close(self) -> None:
        self._samples = None
        fidelity.drop_cached(self.opts.cache_root, self.gen_name)


def evaluate(
    G: torch.nn.Module,
    real: np.ndarray,
    opts: Options,
    *,
    device: torch.device,
    labels: np.ndarray | None = None,
    real_names: list[str] | None = None,
    progress: Progress | None = None,
    log: Log | None = None,
    errors: dict[str, str] | None = None,
) -> tuple[dict, dict]:
    """(results by metric, timings in seconds) for uint8 reals `[N, C, R, R]` and `G`.
    The global RNGs are left as they were (torch's DataLoader draws from them), so a training
    loop that calls this stays reproducible. With `errors`, a failing stage is recorded there
    ({metric: message}) and the other stages still run; without it, it raises."""
    metrics, results, timings = set(opts.metrics), {}, {}
    cuda = [device.index or 0] if device.type == "cuda" else []
    with (
        torch.random.fork_rng(devices=cuda),
        tempfile.TemporaryDirectory(dir=opts.workdir, prefix="medsynth-metrics-") as work,
    ):
        run = _Run(G, real, opts, device, labels, real_names, progress, work)
        stages = [
            ("generate", NEEDS_SAMPLES, run.generate),
            ("fidelity", {"fid", "kid", "pr"}, run.fidelity),
            ("memorization", {"memorization"}, run.memorization),
            ("c2st", {"c2st"}, run.c2st),
            ("ppl", {"ppl"}, run.ppl),
        ]  # fmt: skip
        try:
            for name, needs, stage in stages:
                if metrics & needs:
                    if log:
                        log(f"{name} ...")
                    t0 = time.perf_counter()
                    try:
                        results.update(stage())
                    except Exception as exc:  # noqa: BLE001 - reported per metric
                        if errors is None:
                            raise
                        _record(errors, metrics & needs, name, exc, log)
                    timings[f"{name}_s"] = round(time.perf_counter() - t0, 3)
        finally:
            run.close()
    return results, timings


def _record(errors: dict[str, str], failed: set[str], stage: str, exc: Exception, log) -> None:
    """One failed stage: every metric it serves gets the message (once, first cause kept)."""
    message = f"{type(exc).__name__}: {exc}".strip()
    for metric in sorted(failed):
        if metric not in errors and not (stage == "generate" and metric == "ppl"):
            errors[metric] = message if stage != "generate" else f"generating samples: {message}"
    if log:
        log(f"{stage} failed: {message}")


def quick_fid_kid(
    G: torch.nn.Module,
    data,
    num: int,
    device: str | torch.device = "cpu",
    feature_extractor: str | None = None,
    *,
    batch: int | None = None,
    seed: int = 0,
    kid_subsets: int = 100,
) -> dict:
    """FID and KID of `G` against `data` (a dataset zip path or a loaded ImageDataset), for the
    training loop's FID-over-kimg curve. Real features are cached after the first call."""
    from trainer.dataset import load_dataset
    from trainer.metrics.inputs import real_uint8
    from trainer.metrics.weights import require_weights

    require_weights(("fid", "kid"), feature_extractor)
    ds = load_dataset(data) if isinstance(data, str) else data
    device = torch.device(device)
    opts = Options(metrics=("fid", "kid"), num=num, seed=seed, kid_subsets=kid_subsets,
                   batch=batch or (64 if device.type == "cuda" else 16),
                   feature_extractor=feature_extractor)  # fmt: skip
    real = real_uint8(ds.images, ds.bits)
    res, timings = evaluate(G, real, opts, device=device, labels=ds.labels)
    return {
        "fid": res["fid"]["value"], "fid_relative": res["fid"]["relative"],
        "kid_mean": res["kid"]["mean"], "kid_std": res["kid"]["std"], "num": num,
        "feature_extractor": res["fid"]["feature_extractor"], "seconds": sum(timings.values()),
    }  # fmt: skip
