"""Review decisions over HTTP with 8 reviewers deciding the same slices at once; one JSON line.

Per database (SQLite always; PostgreSQL when MEDSYNTH_TEST_POSTGRES_URL is set or --postgres
URL is given, on a database created for the run and dropped after): p50/p95 of one decision
(PUT /api/volumes/1/slices/N/review) as a reviewer sees it, decisions per second, and what the
database holds afterwards: decisions lost (sent, answered 200, not stored) and duplicated.

    python bench/review_concurrency.py [--reviewers 8] [--decisions 100] [--postgres URL]
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
import threading
import time
import uuid
from collections import Counter
from contextlib import contextmanager
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from app_setup import app_env, app_sessions, ingest_phantom  # noqa: E402

SLICES = (2, 3, 4, 5)  # every reviewer decides the same four slices, round and round
PASSWORD = "timing-run-passphrase"


@contextmanager
def postgres_database(server_url: str):
    """A database of its own on the server for one run (URL), dropped afterwards."""
    from sqlalchemy import create_engine, make_url
    from sqlalchemy.pool import NullPool

    admin = create_engine(server_url, isolation_level="AUTOCOMMIT", poolclass=NullPool)
    name = f"medsynth_bench_{uuid.uuid4().hex[:12]}"
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    try:
        yield make_url(server_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()


def serve(data: Path, database_url: str | None) -> tuple[subprocess.Popen, str]:
    """`python -m app serve` on a free port; its output goes to data/serve.log."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with open(data / "serve.log", "wb") as log:  # the child keeps its own descriptor
        proc = subprocess.Popen(
            [sys.executable, "-m", "app", "serve", "--port", str(port)], cwd=ROOT,
            env={**os.environ, **app_env(data, database_url)}, stdout=log, stderr=log,
        )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180  # a loaded machine imports torch slowly
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            if httpx.get(url + "/healthz", timeout=2).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError(f"the app did not start: {(data / 'serve.log').read_text()[-2000:]}")


def reviewer_tokens(data: Path, url: str | None, n: int) -> list[str]:
    from app.db import session_scope
    from app.services.accounts.users import create_token, create_user

    _, sessions = app_sessions(data, url)
    with session_scope(sessions) as s:
        tokens = [
            create_token(s, create_user(s, f"rev{i}", "reviewer", PASSWORD)) for i in range(n)
        ]
    sessions.kw["bind"].dispose()
    return tokens


def decide(base: str, token: str, who: int, n: int, times: list[float], codes: Counter) -> None:
    """n decisions, each with its own note, so each one is exactly one stored row."""
    with httpx.Client(
        base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=120
    ) as c:
        for k in range(n):
            body = {"decision": ("approved", "rejected")[k % 2], "note": f"rev{who}-{k}"}
            t0 = time.perf_counter()
            r = c.put(f"/api/volumes/1/slices/{SLICES[k % len(SLICES)]}/review", json=body)
            times.append((time.perf_counter() - t0) * 1000)
            codes[r.status_code] += 1


def stored_notes(data: Path, url: str | None) -> Counter:
    from sqlalchemy import select

    from app.models import Review

    _, sessions = app_sessions(data, url)
    with sessions() as s:
        notes = Counter(s.scalars(select(Review.note).where(Review.note != "")))
    sessions.kw["bind"].dispose()
    return notes


def run(database_url: str | None, reviewers: int, decisions: int) -> dict:
    data = Path(tempfile.mkdtemp(prefix="medsynth-bench-"))
    try:
        ingest_phantom(data, 8, ("bench", "admin", PASSWORD), database_url)
        tokens = reviewer_tokens(data, database_url, reviewers)
        proc, base = serve(data, database_url)
        try:
            times: list[float] = []
            codes: Counter = Counter()
            threads = [threading.Thread(target=decide, args=(base, t, i, decisions, times, codes))
                       for i, t in enumerate(tokens)]  # fmt: skip
            t0 = time.perf_counter()
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            wall = time.perf_counter() - t0
        finally:
            proc.kill()
            proc.wait()
        notes = stored_notes(data, database_url)
        sent = {f"rev{i}-{k}" for i in range(reviewers) for k in range(decisions)}
        q = statistics.quantiles(times, n=20)
        return {
            "p50_ms": round(statistics.median(times), 1), "p95_ms": round(q[18], 1),
            "decisions_per_s": round(len(times) / wall, 1), "answers": dict(codes),
            "lost": len(sent - set(notes)), "duplicated": sum(c - 1 for c in notes.values()),
        }  # fmt: skip
    finally:
        shutil.rmtree(data, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reviewers", type=int, default=8)
    ap.add_argument("--decisions", type=int, default=100, help="per reviewer")
    ap.add_argument("--postgres", default=os.environ.get("MEDSYNTH_TEST_POSTGRES_URL", ""),
                    help="a PostgreSQL server URL whose role may CREATE DATABASE")  # fmt: skip
    args = ap.parse_args()
    out: dict = {"bench": "review_concurrency", "reviewers": args.reviewers,
                 "decisions_each": args.decisions, "cpus": os.cpu_count(),
                 "load1": round(os.getloadavg()[0], 2)}  # fmt: skip
    out["sqlite"] = run(None, args.reviewers, args.decisions)
    if args.postgres:
        with postgres_database(args.postgres) as url:
            out["postgresql"] = run(url, args.reviewers, args.decisions)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
