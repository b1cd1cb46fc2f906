"""Attack suite, a killed server: what `kill -9` left in uploads/ and datasets/ is swept when
`python -m app serve` starts again, and nothing a volume row points at is touched."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

import httpx
import numpy as np

from app.db import session_scope
from tests.app.curation_data import add_volume

OLD = time.time() - 3600


def _aged(*paths) -> None:
    for p in paths:
        os.utime(p, (OLD, OLD))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _leftovers(settings):
    """An upload whose ingest was killed before its row, a freeze killed mid-write, and the
    rows and files that must stay."""
    up = settings.uploads_dir
    orphan = up / "0f0f" / "volume-7.nii.gz"
    orphan_mask = up / "0f0f" / "mask" / "segmentation-7.nii.gz"
    for p in (orphan, orphan_mask):
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"half an upload")
    kept = up / "abab" / "volume-1.nii.gz"
    kept.parent.mkdir(parents=True)
    kept.write_bytes(b"a real upload")
    young = up / "cdcd" / "being-ingested.nii.gz"  # a CLI ingest may be writing it right now
    young.parent.mkdir(parents=True)
    young.write_bytes(b"in progress")
    tmp_zip = settings.datasets_dir / ".dataset-000003.zip.k2j4h5.tmp"
    tmp_zip.write_bytes(b"partial zip")
    real_zip = settings.datasets_dir / "dataset-000002.zip"
    real_zip.write_bytes(b"PK")
    _aged(orphan, orphan_mask, orphan_mask.parent, orphan.parent, kept, tmp_zip, real_zip)
    return orphan, orphan_mask, kept, young, tmp_zip, real_zip


def test_start_up_sweeps_what_a_killed_server_left(settings, db):
    with session_scope(db) as s:
        volume = add_volume(s, settings, np.zeros((8, 8, 2), np.int16), "kept")
        volume.source_path = "uploads/abab/volume-1.nii.gz"  # stored relative to the data dir
    orphan, orphan_mask, kept, young, tmp_zip, real_zip = _leftovers(settings)
    port = _free_port()
    env = {**os.environ, "MEDSYNTH_DATA": str(settings.data_dir),
           "MEDSYNTH_SECRET_KEY": settings.secret_key,
           "MEDSYNTH_DATABASE_URL": settings.database_url}  # fmt: skip
    server = subprocess.Popen(
        [sys.executable, "-m", "app", "serve", "--port", str(port)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert server.poll() is None and time.monotonic() < deadline, "server did not start"
            time.sleep(0.2)
    finally:
        server.send_signal(signal.SIGKILL)
        server.wait(timeout=10)
    assert not orphan.exists() and not orphan_mask.exists() and not orphan.parent.exists()
    assert not tmp_zip.exists()
    assert kept.exists() and young.exists() and real_zip.exists()
