"""Slice latency for a reviewer while anonymous clients flood the login form; one JSON line.

Issue 16 measured slice p95 40 → 672 ms under 8 anonymous clients when argon2 shared the
request pool. Here: p50/p95 of slice PNGs with no flood, with 8 flooding clients and the
throttle switched off (argon2 on its own pool is all that protects the reviewer), and with the
default throttle (the flood is answered 429 without hashing).

    python bench/login_flood.py [--requests 100] [--clients 8]
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from slice_render import prepare, serve  # noqa: E402

FORM = 'name="csrf_token" value="'
PACE_S = 0.05


def flood(url: str, stop: threading.Event, counts: dict[int, int]) -> None:
    """Wrong passwords for random names, as fast as the server answers."""
    with httpx.Client(base_url=url, timeout=60) as c:
        while not stop.is_set():
            page = c.get("/login").text
            token = page.split(FORM, 1)[1].split('"', 1)[0]
            data = {"username": secrets.token_hex(4), "password": "x" * 12, "csrf_token": token}
            code = c.post("/login", data=data).status_code
            counts[code] = counts.get(code, 0) + 1


def slice_times(url: str, token: str, n: int) -> dict[str, float]:
    headers = {"Authorization": f"Bearer {token}"}
    times = []
    with httpx.Client(base_url=url, headers=headers, timeout=60) as c:
        for i in range(n):
            t0 = time.perf_counter()
            c.get(f"/api/volumes/1/slices/{i % 20}.png").raise_for_status()
            times.append((time.perf_counter() - t0) * 1000)
            time.sleep(PACE_S)  # a reviewer paging through slices, over seconds of flood
    q = statistics.quantiles(times, n=20)
    return {"p50_ms": round(statistics.median(times), 1), "p95_ms": round(q[18], 1)}


def scenario(data: Path, token: str, n: int, clients: int, throttle: bool) -> dict:
    if not throttle:
        for name in ("MEDSYNTH_LOGIN_FREE_ATTEMPTS", "MEDSYNTH_LOGIN_FREE_ATTEMPTS_IP"):
            os.environ[name] = "1000000"
    proc, url = serve(data)
    try:
        stop, counts = threading.Event(), {}
        threads = [threading.Thread(target=flood, args=(url, stop, counts)) for _ in range(clients)]
        for t in threads:
            t.start()
        time.sleep(3.0 if clients else 0)  # let the flood build up
        out = slice_times(url, token, n)
        stop.set()
        for t in threads:
            t.join()
        return {**out, "flood_answers": counts}
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        os.environ.pop("MEDSYNTH_LOGIN_FREE_ATTEMPTS", None)
        os.environ.pop("MEDSYNTH_LOGIN_FREE_ATTEMPTS_IP", None)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--requests", type=int, default=200)
    p.add_argument("--clients", type=int, default=8)
    args = p.parse_args()
    data = Path(tempfile.mkdtemp(prefix="medsynth-flood-"))
    try:
        token = prepare(data, slices=20)
        result = {
            "bench": "login_flood",
            "clients": args.clients,
            "no_flood": scenario(data, token, args.requests, 0, throttle=True),
            "flood_unthrottled": scenario(data, token, args.requests, args.clients, False),
            "flood_throttled": scenario(data, token, args.requests, args.clients, True),
            "load": os.getloadavg()[0],
        }
        print(json.dumps(result))
    finally:
        shutil.rmtree(data, ignore_errors=True)


if __name__ == "__main__":
    main()
