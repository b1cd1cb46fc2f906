"""`python -m trainer utility`: segmentation / classification trained per arm, one JSON object.

Prints an estimate before it starts and progress lines on stderr (JSON lines with
--progress-json), the result on stdout (and in --out). Exit codes: 0 done, 2 usage or data
error (including a test set that overlaps the training volumes), 4 stopped by SIGTERM/SIGINT.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time

import torch

from trainer.utility import experiment, inference, tasks
from trainer.utility.data import (
    UtilityError,
    check_held_out,
    load_samples,
    resize,
    slice_patients,
    synthetic,
)

EXIT_USAGE, EXIT_CANCELLED = 2, 4
METRIC = {"segmentation": "dice", "classification": "roc_auc"}


class Cancelled(Exception):
    """SIGTERM or SIGINT arrived; stop at the next training step."""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m trainer utility", description=__doc__)
    a = p.add_argument
    a("--snapshot", help="generator snapshot (needed by the arms with synthetic data)")
    a("--train", required=True, help="training dataset zip (with masks for segmentation)")
    a("--test", required=True, help="held-out dataset zip built from other volumes")
    a("--task", choices=["segmentation", "classification"], required=True)
    a("--arms", default="real,real+aug,real+syn:1,real+syn:4,syn")
    a("--fractions", default="0.25,0.5,1", help="fractions of the real training slices")
    a("--seeds", type=int, default=3, help="repeats of every arm (>= 1; 3 or more to report)")
    a("--steps", type=int, default=300, help="training steps of every arm (same for all)")
    a("--batch", type=int, default=16)
    a("--res", type=int, help="train and test at this size (default: the data's)")
    a("--device", choices=["cpu", "cuda", "auto"], default="auto")
    a("--trunc", type=float, default=1.0, help="truncation psi of the synthetic images")
    a("--threads", type=int, default=1, help="CPU threads (default 1: these small networks "
      "run fastest on one thread, above all on a shared machine; 0 = torch's default)")  # fmt: skip
    a("--out", help="also write the result JSON to this file (default WORKDIR/result.json)")
    a("--workdir", help="the run's folder (the web app names it, so it finds the process)")
    a("--progress-json", action="store_true", help="progress as JSON lines on stderr")
    return p


class Progress:
    """Progress lines on stderr: a fraction of the training steps, elapsed and remaining."""

    def __init__(self, total: int, as_json: bool):
        self.total, self.as_json, self.t0, self.last = max(total, 1), as_json, time.time(), -1.0
        self.stop = False

    def say(self, message: str) -> None:
        line = json.dumps({"message": message}) if self.as_json else message
        print(line, file=sys.stderr, flush=True)

    def __call__(self, done: int, message: str | None = None) -> None:
        if self.stop:
            raise Cancelled()
        now = time.time()
        if message is None and now - self.last < 2.0 and done < self.total:
            return
        self.last = now
        elapsed = now - self.t0
        eta = elapsed / done * (self.total - done) if done else None
        left = None if eta is None else round(eta, 1)
        row = {"stage": "train", "done": done, "total": self.total,
               "elapsed_s": round(elapsed, 1), "eta_s": left}  # fmt: skip
        if self.as_json:
            print(json.dumps(row), file=sys.stderr, flush=True)
        if message:
            self.say(message)
        elif not self.as_json:
            print(f"{done}/{self.total} steps, {elapsed:.0f} s, about {eta or 0:.0f} s left",
                  file=sys.stderr, flush=True)  # fmt: skip


def _time_per_step(task: str, res: int, spec: tasks.TrainSpec, device) -> float:
    """Seconds per training step, measured on a throwaway model (6 steps after 2 warm-up
    steps, which allocate and pick kernels)."""
    from trainer.utility.data import Samples

    n = spec.batch
    dummy = Samples(torch.zeros(n, 1, res, res), torch.zeros(n, res, res).long(),
                    torch.zeros(n).long())  # fmt: skip
    warm, timed = (tasks.TrainSpec(k, spec.batch, spec.lr, spec.channels) for k in (2, 6))
    tasks.train(task, dummy, warm, 0, False, device)
    t0 = time.perf_counter()
    tasks.train(task, dummy, timed, 0, True, device)
    return (time.perf_counter() - t0) / 6


def _time_per_image(G, task: str, device) -> float:
    """Seconds per generated pair (one warm-up batch of 2, then a timed batch of 4)."""
    synthetic(G, 2, task, 0.5, 0, device)
    t0 = time.perf_counter()
    synthetic(G, 4, task, 0.5, 0, device)
    return (time.perf_counter() - t0) / 4


def _generator(args, plan: experiment.Plan, device):
    if plan.pool_size == 0:
        return None, None
    if not args.snapshot:
        raise UtilityError("the arms with synthetic data need --snapshot")
    from trainer.snapshot import load_generator

    return load_generator(args.snapshot, device, return_info=True)


def run(args: argparse.Namespace, progress_json: bool) -> dict:
    from trainer.distributed import pick_device

    t0 = time.time()
    if args.seeds < 1 or args.steps < 0 or args.batch < 1:
        raise UtilityError("--seeds and --batch must be >= 1, --steps >= 0")
    device = pick_device(args.device)
    if device.type == "cpu" and args.threads > 0:
        torch.set_num_threads(args.threads)
    real, train_ds = load_samples(args.train, args.task, args.res)
    test, test_ds = load_samples(args.test, args.task, args.res)
    res = real.images.shape[-1]
    if test.images.shape[-1] != res:
        raise UtilityError(f"train is {res}² but test {test.images.shape[-1]}²: pass --res")
    spec = tasks.TrainSpec(steps=args.steps, batch=args.batch)
    plan = experiment.Plan(args.task, experiment.parse_arms(args.arms),
                           experiment.parse_fractions(args.fractions), args.seeds, spec,
                           len(real))  # fmt: skip
    G, info = _generator(args, plan, device)
    gen_prov = (info or {}).get("provenance") if G is not None else None
    volumes = check_held_out(train_ds.provenance, test_ds.provenance, gen_prov)
    if args.task == "classification" and len(set(test.classes.tolist())) < 2:
        raise UtilityError("the test set needs both tumour and normal slices for ROC AUC")
    progress = Progress(plan.total_steps, progress_json)
    _install_stop(progress)
    sec = _time_per_step(args.task, res, spec, device)
    gen_sec = _time_per_image(G, args.task, device) * plan.pool_size if G is not None else 0.0
    estimate = sec * plan.total_steps + gen_sec
    progress.say(
        f"estimate: about {estimate / 60:.1f} min for {len(plan.runs)} trainings x "
        f"{spec.steps} steps ({sec * 1000:.0f} ms/step at {res}², batch {spec.batch}) on "
        f"{device}, plus {plan.pool_size} synthetic images (about {gen_sec:.0f} s)"
    )
    pool = None
    if G is not None:
        freq = float(real.classes.float().mean())
        pool = resize(synthetic(G, plan.pool_size, args.task, freq, 0, device), res)
        progress.say(f"generated {len(pool)} synthetic pairs")
    progress.t0 = time.time()  # the remaining-time figure is about training from here
    scores = experiment.run_all(plan, real, test, pool, device, progress)
    patients = slice_patients(test_ds.provenance, len(test))
    results = experiment.summarise(plan, scores, test, patients)
    return {
        "task": args.task, "metric": METRIC[args.task], "results": results,
        "inference": inference.design(plan.seeds, len(set(patients))),
        "test": {"n_slices": len(test), "volumes": volumes,
                 "n_tumour": int(test.classes.sum())},
        "train": {"n_slices": len(real), "resolution": res,
                  "dataset_id": train_ds.provenance.get("dataset_id")},
        "options": {"arms": [a.name for a in plan.arms], "fractions": plan.fractions,
                    "seeds": plan.seeds, "steps": spec.steps, "batch": spec.batch,
                    "device": str(device), "snapshot": args.snapshot, "trunc": args.trunc},
        "estimate_s": round(estimate, 1),
        "seconds": round(time.time() - t0, 1),
    }  # fmt: skip


def _install_stop(progress: Progress) -> None:
    def handler(signum, frame) -> None:
        progress.stop = True

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from trainer.dataset import DatasetError
    from trainer.snapshot import SnapshotError

    try:
        result = run(args, args.progress_json)
    except (UtilityError, DatasetError, SnapshotError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except Cancelled:
        print("error: cancelled", file=sys.stderr)
        return EXIT_CANCELLED
    text = json.dumps(result)
    if args.workdir and not args.out:
        os.makedirs(args.workdir, exist_ok=True)
        args.out = os.path.join(args.workdir, "result.json")
    if args.out:
        tmp = args.out + ".tmp"
        with open(tmp, "w") as f:
            f.write(text + "\n")
        os.replace(tmp, args.out)
    print(text)
    return 0
