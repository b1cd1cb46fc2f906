"""Ingest of a 512×512×300 .nii.gz (with its LiTS mask): seconds and peak memory; one JSON line.

The phantom is written first (not timed); the ingest then runs in a fresh subprocess, which
reports its peak resident memory before and after (VmHWM from /proc, which unlike ru_maxrss
is not inherited from the parent through fork), so the figure is the ingest's own.
Targets: ≤ 10 s, and peak memory above the baseline ≤ 3× the decompressed volume.

    python bench/ingest.py [--slices 300]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

CHILD = """
import json, sys, time
from pathlib import Path
from app.services.curation.ingest import ingest_file
from bench.app_setup import app_sessions, peak_kb

data = Path(sys.argv[1])
settings, sessions = app_sessions(data / "app")
base = peak_kb()
t0 = time.perf_counter()
with sessions() as s:
    volume = ingest_file(s, settings, data / "volume-0.nii.gz", data / "segmentation-0.nii.gz")
seconds = time.perf_counter() - t0
peak = peak_kb()
print(json.dumps({"seconds": seconds, "base_kb": base, "peak_kb": peak, "shape": volume.shape}))
"""


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--slices", type=int, default=300)
    args = p.parse_args()
    from app.phantom.volume import make_phantom, write_phantom

    data = Path(tempfile.mkdtemp(prefix="medsynth-bench-"))
    try:
        t0 = time.perf_counter()
        phantom = make_phantom(0, size=512, slices=args.slices)
        write_phantom(phantom, data / "volume-0.nii.gz", data / "segmentation-0.nii.gz")
        del phantom
        made = time.perf_counter() - t0
        out = subprocess.run(
            [sys.executable, "-c", CHILD, str(data)],
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            capture_output=True,
            text=True,
            check=True,
        )
        child = json.loads(out.stdout.strip().splitlines()[-1])
        decompressed = 512 * 512 * args.slices * 2
        extra = (child["peak_kb"] - child["base_kb"]) * 1024
        print(
            json.dumps(
                {
                    "bench": "ingest",
                    "shape": child["shape"],
                    "compressed_mb": round((data / "volume-0.nii.gz").stat().st_size / 1e6, 1),
                    "decompressed_mb": round(decompressed / 1e6, 1),
                    "with_mask": True,
                    "seconds": round(child["seconds"], 2),
                    "peak_rss_mb": round(child["peak_kb"] * 1024 / 1e6, 1),
                    "baseline_rss_mb": round(child["base_kb"] * 1024 / 1e6, 1),
                    "peak_over_baseline_mb": round(extra / 1e6, 1),
                    "memory_ratio": round(extra / decompressed, 2),
                    "target_seconds": 10,
                    "target_memory_ratio": 3,
                    "phantom_write_seconds": round(made, 1),
                    "cpus": os.cpu_count(),
                }
            )
        )
    finally:
        shutil.rmtree(data, ignore_errors=True)


if __name__ == "__main__":
    main()
