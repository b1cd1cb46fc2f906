"""Slice PNG latency through HTTP: p50/p95 over 200 requests of 512×512 slices; one JSON line.

Builds a 512×512 phantom volume in a temporary data folder, ingests it, starts the real server
(`python -m app serve`) in a subprocess and times requests from a keep-alive client, the way
the viewer fetches slices. Target: p95 ≤ 25 ms.

    python bench/slice_render.py [--requests 200] [--slices 40]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.app_setup import ingest_phantom  # noqa: E402


def prepare(data: Path, slices: int) -> str:
    """Ingest one 512×512 phantom and return an API token for it."""
    return ingest_phantom(data, slices, ("bench", "admin", "timing-run-passphrase"))


def serve(data: Path) -> tuple[subprocess.Popen, str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "MEDSYNTH_DATA": str(data), "MEDSYNTH_SECRET_KEY": "bench"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "app", "serve", "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("server did not start")


def timed(client: httpx.Client, paths: list[str]) -> tuple[list[float], int]:
    times, size = [], 0
    for path in paths:
        t0 = time.perf_counter()
        r = client.get(path)
        times.append((time.perf_counter() - t0) * 1000)
        r.raise_for_status()
        size += len(r.content)
    return times, size // len(paths)


def pct(values: list[float], q: float) -> float:
    return round(statistics.quantiles(values, n=100, method="inclusive")[q - 1], 2)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--requests", type=int, default=200)
    p.add_argument("--slices", type=int, default=40)
    args = p.parse_args()
    data = Path(tempfile.mkdtemp(prefix="medsynth-bench-"))
    proc = None
    try:
        token = prepare(data, args.slices)
        proc, url = serve(data)
        headers = {"Authorization": f"Bearer {token}"}
        with httpx.Client(base_url=url, headers=headers, timeout=30) as client:
            paths = [f"/api/volumes/1/slices/{i % args.slices}.png" for i in range(args.requests)]
            timed(client, paths[:20])  # warm-up: imports, page cache, connection
            plain, plain_bytes = timed(client, [p + "?window=liver" for p in paths])
            overlay, _ = timed(client, [p + "?window=abdomen&overlay=mask" for p in paths])
        print(
            json.dumps(
                {
                    "bench": "slice_render",
                    "image": [512, 512],
                    "requests": args.requests,
                    "p50_ms": pct(plain, 50),
                    "p95_ms": pct(plain, 95),
                    "mean_ms": round(statistics.fmean(plain), 2),
                    "overlay_p50_ms": pct(overlay, 50),
                    "overlay_p95_ms": pct(overlay, 95),
                    "png_kb": round(plain_bytes / 1024, 1),
                    "target_p95_ms": 25,
                    "cpus": os.cpu_count(),
                }
            )
        )
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(timeout=20)
        shutil.rmtree(data, ignore_errors=True)


if __name__ == "__main__":
    main()
