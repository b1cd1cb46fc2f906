"""Utility-run benchmark: 64² liver segmentation, 3 arms x 3 fractions x 3 seeds, 200 real
phantom slices (performance.md: <= 15 min on this CPU). Prints one JSON line.

    python bench/utility.py [--res 64] [--steps 300] [--device cpu] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def _slices_per_volume(res: int, slices: int) -> int:
    from tests.trainer.utility_phantoms import phantom_slices

    return len(phantom_slices(0, res, slices)[0])


def build_data(work: str, res: int, n_train: int, slices: int = 30) -> tuple[str, str, str]:
    """Train / test zips from disjoint phantom volumes, and an (untrained) paired snapshot of
    the default network size at `res`, so generation costs what a real one does."""
    from tests.trainer.utility_phantoms import pair_zip

    per = max(_slices_per_volume(res, slices), 1)
    n_vol = -(-n_train // per) + 1
    train = pair_zip(os.path.join(work, "train.zip"), list(range(1, n_vol + 1)), res, slices,
                     limit=n_train)  # fmt: skip
    test = pair_zip(os.path.join(work, "test.zip"), list(range(100, 105)), res, slices,
                    dataset_id=2)  # fmt: skip
    run = os.path.join(work, "run")
    subprocess.run([sys.executable, "-m", "trainer", "train", "--data", train, "--outdir", run,
                    "--kimg", "0", "--device", "cpu", "--aug", "noaug"], cwd=ROOT, check=True,
                   capture_output=True)  # fmt: skip
    return train, test, os.path.join(run, "snapshot-000000.pt")


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--res", type=int, default=64)
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--n-train", type=int, default=200)
    p.add_argument("--device", default="cpu")
    p.add_argument("--workdir")
    args = p.parse_args()
    work = args.workdir or tempfile.mkdtemp(prefix="bench-utility-")
    load_before = os.getloadavg()
    train, test, snap = build_data(work, args.res, args.n_train)
    cmd = [sys.executable, "-m", "trainer", "utility", "--snapshot", snap, "--train", train,
           "--test", test, "--task", "segmentation", "--arms", "real,real+aug,real+syn:1",
           "--fractions", "0.25,0.5,1", "--seeds", "3", "--steps", str(args.steps),
           "--device", args.device, "--progress-json",
           "--out", os.path.join(work, "out.json")]  # fmt: skip
    t0 = time.time()
    log = os.path.join(work, "progress.log")  # the run's estimate and progress, to follow
    with open(log, "w") as err:
        proc = subprocess.run(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=err, text=True)
    wall = time.time() - t0
    if proc.returncode != 0:
        sys.exit(open(log).read()[-2000:])
    result = json.loads(proc.stdout)
    dice = {f"{r['arm']}@{r['fraction']:g}": round(r["mean"], 3) for r in result["results"]}
    print(json.dumps({
        "bench": "utility", "res": args.res, "device": args.device, "arms": 3, "fractions": 3,
        "seeds": 3, "steps": args.steps, "n_train": result["train"]["n_slices"],
        "n_test": result["test"]["n_slices"], "wall_s": round(wall, 1),
        "estimate_s": result["estimate_s"], "target_s": 900 if args.device == "cpu" else 600,
        "estimate_line": next((json.loads(ln)["message"] for ln in open(log)
                               if ln.startswith('{"message": "estimate')), None),
        "cores": os.cpu_count(), "load_before": [round(v, 2) for v in load_before],
        "load_after": [round(v, 2) for v in os.getloadavg()], "dice": dice,
    }))  # fmt: skip


if __name__ == "__main__":
    main()
