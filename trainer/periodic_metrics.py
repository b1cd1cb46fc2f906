"""FID/KID of G_ema at every N-th snapshot (and the last), for the job page's FID-over-kimg curve.

Off unless --metrics-every N > 0. Rank 0 measures while the other ranks wait at a barrier, and
every RNG state is put back afterwards, so a run with metrics ends with the same weights as one
without. Missing pretrained weights are logged once and switch the measurements off; a stop
request (SIGTERM) cuts a measurement short, so cancelling a job never waits for one.
"""

from __future__ import annotations

import contextlib
import math
import signal
import time

import torch

from trainer import distributed, snapshot
from trainer.config import TrainConfig
from trainer.dataset import ImageDataset
from trainer.options import UsageError
from trainer.stats import RunLog


def load_extractor(spec: str) -> str | None:
    """Register the extractor of --metrics-extractor-module; its name, or None for Inception."""
    if not spec:
        return None
    from trainer.metrics.extractor_module import load_extractor_module

    try:
        return load_extractor_module(spec, None)
    except (ImportError, AttributeError) as e:
        raise UsageError(f"--metrics-extractor-module {spec}: {e}") from e


class _Interrupted(BaseException):
    """A stop request cut a measurement short (a BaseException: no `except Exception` eats it)."""


@contextlib.contextmanager
def _interruptible():
    """SIGTERM/SIGINT go to the loop's handler as usual and then abort the measurement (once)."""
    old: dict[int, object] = {}
    fired: list[int] = []

    def handle(signum, frame) -> None:
        previous = old[signum]
        if callable(previous):
            previous(signum, frame)  # the loop's StopFlag still sees the request
        if not fired:
            fired.append(signum)
            raise _Interrupted

    with contextlib.suppress(ValueError):  # not the main thread: signals cannot be caught here
        for sig in (signal.SIGTERM, signal.SIGINT):
            old[sig] = signal.signal(sig, handle)
    try:
        yield
    finally:
        for sig, previous in old.items():
            signal.signal(sig, previous)


def _fmt(v: float | None, spec: str = ".4g") -> str:
    return "-" if v is None or not math.isfinite(v) else format(v, spec)


class PeriodicMetrics:
    """When to measure (the same answer on every rank) and the measuring itself (rank 0)."""

    def __init__(self, train: TrainConfig, log: RunLog, is_main: bool) -> None:
        self.every, self.num = train.metrics_every, train.metrics_num
        self.snap_ticks, self.log, self.is_main = train.snap_ticks, log, is_main
        self.enabled = self.every > 0  # rank 0 turns it off when the weights are missing
        self.extractor = load_extractor(train.metrics_extractor_module) if self.enabled else None
        if self.enabled and is_main:
            self._announce()

    def _announce(self) -> None:
        """Say what will be measured, or why nothing will (weights missing: said once, here)."""
        from trainer.metrics import MissingWeightsError, check_weights

        missing = check_weights(("fid", "kid"), self.extractor)
        if missing:
            self._switch_off(MissingWeightsError(missing))
            return
        self.log.line(
            f"metrics: FID/KID every {self.every} snapshot(s) and at the end, {self.num} "
            f"samples, extractor {self.extractor or 'inception-v3-compat'}"
        )

    def _switch_off(self, error: Exception) -> None:
        self.enabled = False
        self.log.line(f"metrics: off for the rest of this run: {error}")

    def due(self, tick: int, done: bool) -> bool:
        """At the run's last snapshot and at every `every`-th regular one (counted in ticks,
        so a resumed run measures at the same snapshots)."""
        return self.every > 0 and (done or tick % (self.snap_ticks * self.every) == 0)

    def measure(
        self, G: torch.nn.Module, dataset: ImageDataset, device: torch.device, kimg: float
    ) -> dict:
        """Fields for the tick's stats line ({} when off or failed); every rank calls it."""
        out = self._measure(G, dataset, device, kimg) if self.is_main and self.enabled else {}
        distributed.barrier()
        return out

    def _measure(
        self, G: torch.nn.Module, dataset: ImageDataset, device: torch.device, kimg: float
    ) -> dict:
        from trainer.metrics import MissingWeightsError, quick_fid_kid

        rng, t0 = snapshot.capture_rng(), time.perf_counter()
        try:
            with _interruptible():
                r = quick_fid_kid(G, dataset, self.num, device, self.extractor)
        except _Interrupted:
            self.log.line(f"metrics at kimg {kimg:.3f}: cut short by a stop request")
            return {}
        except MissingWeightsError as e:  # e.g. the files were removed since the start
            self._switch_off(e)
            return {}
        except Exception as e:  # a metric must never end a long training run
            self.log.line(f"warning: metrics at kimg {kimg:.3f} failed ({type(e).__name__}: {e})")
            return {}
        finally:
            snapshot.restore_rng(rng)  # a custom extractor may draw from the global RNGs
        seconds = time.perf_counter() - t0
        self.log.line(
            f"metrics at kimg {kimg:.3f}: fid {_fmt(r['fid'])} (relative "
            f"{_fmt(r['fid_relative'], '.3g')}) kid {_fmt(r['kid_mean'])} ± "
            f"{_fmt(r['kid_std'], '.2g')} from {r['num']} samples, {r['feature_extractor']}, "
            f"{seconds:.1f} s"
        )
        return {
            "fid": r["fid"],
            "fid_relative": r["fid_relative"],
            "kid_mean": r["kid_mean"],
            "kid_std": r["kid_std"],
            "metrics_seconds": round(seconds, 3),
            "metrics_num": r["num"],
            "metrics_extractor": r["feature_extractor"],
        }
