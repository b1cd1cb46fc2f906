"""`metrics` and `fetch-weights` on the command line: one JSON object on stdout, progress
(and a time estimate before the work starts) on stderr.

Each metric runs on its own: one that lacks its weights is reported under "skipped", one that
fails under "errors", and the rest are computed (exit 0).

Exit codes: 0 done (at least one metric computed), 1 unexpected error or every metric failed,
2 bad options / dataset / snapshot, 3 pretrained weights missing for every requested metric
(the message names file, folder and SHA-256 prefix) or not downloadable, 4 cancelled (SIGTERM
/ SIGINT; temporary files are removed). `metrics plan ...` answers what a run could do here.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import sys
import time
import traceback

from trainer.metrics.extractor_module import load_extractor_module

EXIT_USAGE, EXIT_WEIGHTS, EXIT_CANCELLED = 2, 3, 4


def add_metrics_arguments(p: argparse.ArgumentParser) -> None:
    a = p.add_argument
    a("--snapshot", required=True, help="snapshot-KKKKKK.pt (its G_ema is evaluated)")
    a("--data", required=True, help="the dataset zip the snapshot was trained on")
    a("--metrics", default="fid,kid,pr,ppl,memorization,c2st", help="comma-separated list")
    a("--num", type=int, default=10000, help="generated samples (default 10000)")
    a("--device", choices=["cpu", "cuda", "auto"], default="auto")
    a("--batch", type=int, help="images per batch (default 16 on CPU, 64 on CUDA)")
    a("--seed", type=int, default=0, help="first generator seed; also seeds KID, PPL, C2ST")
    a("--trunc", type=float, default=1.0, help="truncation psi (default 1 = none)")
    a("--feature-extractor", help="a torch-fidelity extractor name instead of the defaults")
    a("--extractor-module", metavar="MODULE[:FUNCTION]",
      help="import MODULE (and call FUNCTION) first, to register your own torch-fidelity "
           "feature extractor (e.g. a radiology-pretrained network); a name FUNCTION "
           "returns is the default --feature-extractor")  # fmt: skip
    a("--kid-subsets", type=int, default=100)
    a("--pr-k", type=int, default=3, help="precision/recall neighbourhood (default 3)")
    a("--ppl-num", type=int, help="PPL samples (default --num)")
    a("--ppl-sampling", choices=["end", "full"], default="end", help="end = ppl2_wend")
    a("--copy-threshold", type=float, default=0.95, help="NCC at which a sample is a copy")
    a("--top-k", type=int, default=16, help="closest (sample, training image) pairs to list")
    a("--c2st-folds", type=int, default=5)
    a("--c2st-epochs", type=int, default=15)
    a("--cache-root", help="torch-fidelity feature cache (default $TORCH_HOME/fidelity_cache)")
    a("--no-cache", action="store_true", help="do not cache real-image features")
    a("--workdir", help="where large sample sets are memory-mapped (default: system temp)")
    a("--out", help="also write the JSON object to this file")
    a("--progress-json", action="store_true", help="progress as JSON lines on stderr")
    a("--no-estimate", action="store_true", help="skip the timing probe before the run")
    a("--no-per-sample", action="store_true", help="leave out per-sample memorisation arrays")


def add_fetch_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--metrics", default="fid,kid,pr,ppl,memorization,c2st",
                   help="download what these metrics need (default: all)")  # fmt: skip
    p.add_argument("--quiet", action="store_true", help="no download progress bar")


def register(subparsers) -> None:
    """Add `metrics` and `fetch-weights` to an argparse subparsers object."""
    m = subparsers.add_parser("metrics", help="quality metrics of a snapshot (one JSON object)")
    add_metrics_arguments(m)
    m.set_defaults(func=run_metrics)
    f = subparsers.add_parser("fetch-weights", help="download and verify metric weights")
    add_fetch_arguments(f)
    f.set_defaults(func=run_fetch)


class StderrProgress:
    """Throttled progress lines with rate and time left, human-readable or JSON lines."""

    def __init__(self, as_json: bool = False, interval: float = 2.0):
        self.as_json, self.interval = as_json, interval
        self.started: dict[str, float] = {}
        self.last = 0.0

    def __call__(self, stage: str, done: int, total: int) -> None:
        now = time.perf_counter()
        t0 = self.started.setdefault(stage, now)
        if done < total and now - self.last < self.interval:
            return
        self.last = now
        elapsed = now - t0
        eta = elapsed / done * (total - done) if done else None
        if self.as_json:
            self._emit({"stage": stage, "done": done, "total": total,
                        "elapsed_s": round(elapsed, 1),
                        "eta_s": None if eta is None else round(eta, 1)})  # fmt: skip
        else:
            left = "" if eta is None else f", {eta:.0f} s left"
            self._emit(f"{stage} {done}/{total} ({100 * done / max(total, 1):.0f}%{left})")

    def log(self, message: str) -> None:
        self._emit({"message": message} if self.as_json else message)

    def _emit(self, item) -> None:
        text = json.dumps(item) if self.as_json else f"[metrics] {item}"
        print(text, file=sys.stderr, flush=True)


def _finite(obj):
    """NaN/inf -> None, so the output is strict JSON."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_finite(v) for v in obj]
    return obj


def _write_atomic(path: str, text: str) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def _options(args: argparse.Namespace) -> dict:
    return dict(
        seed=args.seed, truncation_psi=args.trunc, kid_subsets=args.kid_subsets, pr_k=args.pr_k,
        ppl_num=args.ppl_num, ppl_sampling=args.ppl_sampling, copy_threshold=args.copy_threshold,
        top_k=args.top_k, c2st_folds=args.c2st_folds, c2st_epochs=args.c2st_epochs,
        workdir=args.workdir,
    )  # fmt: skip


def run_metrics(args: argparse.Namespace) -> int:
    from trainer.dataset import DatasetError
    from trainer.metrics.compute import compute_metrics
    from trainer.metrics.fidelity import default_cache_root
    from trainer.metrics.weights import MissingWeightsError
    from trainer.snapshot import SnapshotError

    progress = StderrProgress(args.progress_json)
    try:
        extractor = load_extractor_module(args.extractor_module, args.feature_extractor)
    except (ImportError, AttributeError) as e:
        print(f"error: --extractor-module {args.extractor_module}: {e}", file=sys.stderr)
        return EXIT_USAGE
    opts = _options(args)
    opts["cache_root"] = None if args.no_cache else (args.cache_root or default_cache_root())
    try:
        with _cancel_on_sigterm():
            result = compute_metrics(
                args.snapshot, args.data, args.metrics, args.num, args.device,
                extractor, progress, args.batch, log=progress.log,
                estimate=not args.no_estimate, **opts,
            )  # fmt: skip
    except MissingWeightsError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_WEIGHTS
    except (DatasetError, SnapshotError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("error: cancelled", file=sys.stderr)
        return EXIT_CANCELLED
    except Exception as e:
        traceback.print_exc(file=sys.stderr)
        print(f"error: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    if not result["metrics"]:  # every metric failed: a failed run, with each one's reason
        for metric, why in result["errors"].items():
            print(f"error: {metric}: {why}", file=sys.stderr)
        return 1
    if args.no_per_sample and "memorization" in result["metrics"]:
        result["metrics"]["memorization"].pop("per_sample", None)
    text = json.dumps(_finite(result), allow_nan=False)
    if args.out:
        _write_atomic(args.out, text + "\n")
    print(text, flush=True)
    return 0


class _cancel_on_sigterm:
    """SIGTERM behaves like Ctrl-C, so `finally` blocks remove temporary files."""

    def __enter__(self):
        self.previous = None
        try:
            self.previous = signal.signal(signal.SIGTERM, self._raise)
        except ValueError:  # not the main thread: leave signals alone
            pass
        return self

    @staticmethod
    def _raise(signum, frame):
        raise KeyboardInterrupt

    def __exit__(self, *exc):
        if self.previous is not None:
            signal.signal(signal.SIGTERM, self.previous)
        return False


def run_fetch(args: argparse.Namespace) -> int:
    from trainer.metrics.evaluate import parse_metrics
    from trainer.metrics.weights import FetchError, fetch_weights

    try:
        paths = fetch_weights(parse_metrics(args.metrics), progress=lambda m: print(
            m, file=sys.stderr), show_bar=not args.quiet)  # fmt: skip
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except FetchError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_WEIGHTS
    print(json.dumps({"weights": paths}))
    return 0


def main(argv: list[str] | None = None) -> int:
    """`[metrics options]` or `fetch-weights [options]` (python -m trainer.metrics ...)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "plan":
        from trainer.metrics.plan import main as plan_main

        return plan_main(argv[1:])
    if argv and argv[0] == "fetch-weights":
        p = argparse.ArgumentParser(prog="python -m trainer fetch-weights")
        add_fetch_arguments(p)
        return run_fetch(p.parse_args(argv[1:]))
    if argv and argv[0] == "metrics":
        argv = argv[1:]
    p = argparse.ArgumentParser(
        prog="python -m trainer metrics",
        description="Quality metrics of a snapshot; one JSON object.",
    )
    add_metrics_arguments(p)
    return run_metrics(p.parse_args(argv))
