"""Snapshots: atomic writes that survive a full disk, and loading a bare generator."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys

import pytest
import torch

from tests.trainer.helpers import TINY, load, trainer_env
from trainer import snapshot
from trainer.snapshot import SnapshotError, find_latest, load_generator, save_atomic


def _disk_full(obj, f, *args, **kwargs):
    f.write(b"half a snapshot")
    raise OSError(errno.ENOSPC, "No space left on device")


def test_failed_write_keeps_the_previous_snapshot_and_leaves_no_tmp(tmp_path, monkeypatch):
    path = str(tmp_path / "snapshot-000001.pt")
    save_atomic({"v": torch.arange(3)}, path)
    before = open(path, "rb").read()
    monkeypatch.setattr(snapshot.torch, "save", _disk_full)
    with pytest.raises(OSError):
        save_atomic({"v": torch.zeros(3)}, path)
    assert open(path, "rb").read() == before
    assert os.listdir(tmp_path) == ["snapshot-000001.pt"]


def test_training_goes_on_when_a_snapshot_cannot_be_written(
    tmp_path, tiny_zip, monkeypatch, one_thread
):
    from trainer import loop
    from trainer.cli import main

    calls = []

    def flaky(obj, path):
        calls.append(path)
        if len(calls) == 1:
            raise OSError(errno.ENOSPC, "No space left on device")
        save_atomic(obj, path)

    monkeypatch.setattr(loop.snapshot, "save_atomic", flaky)
    rc = main(
        [
            "train",
            "--data",
            tiny_zip,
            "--outdir",
            str(tmp_path),
            "--kimg",
            "0.048",
            "--tick",
            "0.016",
            "--snap",
            "1",
            *TINY,
        ]
    )
    assert rc == 0 and len(calls) == 3
    log = (tmp_path / "log.txt").read_text()
    assert "could not write snapshot-000000.pt" in log and "No space left" in log
    assert len((tmp_path / "stats.jsonl").read_text().splitlines()) == 3
    # below 1 kimg each snapshot keeps its own file (issue 10): the newest holds all 48 images
    assert load(find_latest(str(tmp_path)))["progress"]["cur_nimg"] == 48
    assert not [n for n in os.listdir(tmp_path) if n.endswith(".tmp")]


def test_snapshot_holds_the_whole_training_state(tiny_run):
    state = load(find_latest(tiny_run))
    for key in (
        "G",
        "D",
        "G_ema",
        "opt_G",
        "opt_D",
        "augment",
        "pl_mean",
        "sampler",
        "rng",
        "options",
        "progress",
        "counters",
        "dataset",
        "tick_stats",
    ):
        assert key in state, key
    assert state["progress"]["cur_nimg"] == 64 and state["counters"]["batch_idx"] == 16
    assert set(state["rng"][0]) == {"python", "numpy", "torch", "cuda"}
    assert state["opt_G"]["state"] and state["opt_D"]["state"]
    assert state["dataset"]["hu_mapping"] == {"lo": -150, "hi": 250, "source": "window"}
    options = json.load(open(os.path.join(tiny_run, "options.json")))
    assert options["network"] == state["options"]["network"]


def test_generator_loads_standalone_in_a_fresh_process(tiny_run):
    code = (
        "import sys, torch; from trainer.snapshot import load_generator\n"
        "G, info = load_generator(sys.argv[1], 'cpu', return_info=True)\n"
        "img = G(torch.zeros([2, G.z_dim]), None, noise_mode='const')\n"
        "print(tuple(img.shape), G.training, info['bits'], info['hu_mapping']['source'])\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, find_latest(tiny_run)],
        env=trainer_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["(2,", "1,", "16,", "16)", "False", "8", "window"]


def test_load_generator_picks_ema_or_raw(tiny_run):
    path = find_latest(tiny_run)
    G_ema, G = load_generator(path), load_generator(path, ema=False)
    diff = [(a - b).abs().max() for a, b in zip(G_ema.parameters(), G.parameters(), strict=True)]
    assert max(diff) > 0
    assert not any(p.requires_grad for p in G_ema.parameters())


def test_find_latest_prefers_the_highest_kimg(tmp_path):
    for name in ("snapshot-000010.pt", "snapshot-000002.pt", "snapshot-000010.pt.tmp", "x.pt"):
        (tmp_path / name).write_bytes(b"")
    assert find_latest(str(tmp_path)) == str(tmp_path / "snapshot-000010.pt")
    assert find_latest(str(tmp_path / "missing")) is None


def test_foreign_files_are_not_snapshots(tmp_path):
    junk = tmp_path / "snapshot-000001.pt"
    junk.write_bytes(b"garbage")
    with pytest.raises(SnapshotError, match="not a readable snapshot"):
        load_generator(str(junk))
    torch.save({"weights": torch.zeros(1)}, junk)
    with pytest.raises(SnapshotError, match="not a MedSynth snapshot"):
        load_generator(str(junk))
