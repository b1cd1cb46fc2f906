"""Ingest of a 512×512×300 DICOM CT series (300 files): seconds and peak memory; one JSON line.

The series is written first with pydicom from the CT phantom (not timed), shuffled file names,
slope/intercept 1/−1024, zipped as a PACS export would be (deflate). The ingest then runs in a
fresh subprocess that reports its peak resident memory before and after (VmHWM from /proc),
so the figure is the ingest's own: unzip with checks, header pass, ordering, HU decode into a
scratch memmap, RAS cache write, content hash. Targets: ≤ 15 s; peak above baseline ≤ 3× the
int16 volume.

    python bench/dicom_ingest.py [--slices 300] [--folder]   # --folder: no zip, a directory
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
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

CHILD = """
import json, sys, time
from pathlib import Path
from app.services.curation.ingest_dicom import ingest_dicom
from bench.app_setup import app_sessions, peak_kb

data, source = Path(sys.argv[1]), Path(sys.argv[2])
settings, sessions = app_sessions(data / "app")
import pydicom, highdicom  # imported before the baseline, as in a running server
base = peak_kb()
t0 = time.perf_counter()
with sessions() as s:
    done = ingest_dicom(s, settings, source)
seconds = time.perf_counter() - t0
peak = peak_kb()
shape = done.volumes[0].shape
print(json.dumps({"seconds": seconds, "base_kb": base, "peak_kb": peak, "shape": shape}))
"""


def write_series(folder: Path, slices: int) -> None:
    """The phantom as one CT file per slice, in the radiological layout a scanner writes."""
    import numpy as np
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian

    from app.phantom.volume import make_phantom
    from tests.app.dicom_files import _base, _save

    hu = make_phantom(0, size=512, slices=slices).hu  # RAS [x, y, z]
    folder.mkdir(parents=True)
    order = np.random.default_rng(0).permutation(slices)
    for k in range(slices):
        ds = _base("1.2.826.0.1.3680043.8.498.77", "1.2.826.0.1.3680043.8.498.78", "CT")
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        ds.ImagePositionPatient = [-200.0, -200.0, -300.0 + 1.0 * k]
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.PixelSpacing, ds.SliceThickness = [0.78, 0.78], 1.0
        ds.Rows = ds.Columns = 512
        ds.RescaleSlope, ds.RescaleIntercept = 1, -1024
        ds.PixelData = (hu[::-1, ::-1, k].T.astype(np.int32) + 1024).astype(np.int16).tobytes()
        _save(ds, folder / f"IM{order[k]:05d}", CTImageStorage, ExplicitVRLittleEndian)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--slices", type=int, default=300)
    p.add_argument("--folder", action="store_true", help="ingest the folder, not a zip")
    args = p.parse_args()
    data = Path(tempfile.mkdtemp(prefix="medsynth-dicom-bench-"))
    try:
        t0 = time.perf_counter()
        write_series(data / "series", args.slices)
        source = data / "series"
        if not args.folder:
            source = data / "series.zip"
            with zipfile.ZipFile(source, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
                for f in sorted((data / "series").iterdir()):
                    zf.write(f, f"export/{f.name}")
        made = time.perf_counter() - t0
        out = subprocess.run(
            [sys.executable, "-c", CHILD, str(data), str(source)],
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            capture_output=True,
            text=True,
        )
        if out.returncode:
            sys.exit(f"ingest failed:\n{out.stderr[-3000:]}")
        child = json.loads(out.stdout.strip().splitlines()[-1])
        volume = 512 * 512 * args.slices * 2
        extra = (child["peak_kb"] - child["base_kb"]) * 1024
        print(
            json.dumps(
                {
                    "bench": "dicom_ingest",
                    "source": "folder" if args.folder else "zip",
                    "files": args.slices,
                    "shape": child["shape"],
                    "upload_mb": round(source.stat().st_size / 1e6, 1) if not args.folder else None,
                    "volume_mb": round(volume / 1e6, 1),
                    "seconds": round(child["seconds"], 2),
                    "peak_rss_mb": round(child["peak_kb"] * 1024 / 1e6, 1),
                    "baseline_rss_mb": round(child["base_kb"] * 1024 / 1e6, 1),
                    "peak_over_baseline_mb": round(extra / 1e6, 1),
                    "memory_ratio": round(extra / volume, 2),
                    "target_seconds": 15,
                    "target_memory_ratio": 3,
                    "setup_seconds": round(made, 1),
                    "cpus": os.cpu_count(),
                }
            )
        )
    finally:
        shutil.rmtree(data, ignore_errors=True)


if __name__ == "__main__":
    main()
