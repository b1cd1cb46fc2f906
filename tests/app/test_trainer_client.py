"""The app's one trainer client: command lines, the follower, one-shot calls in user words."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from app.trainer_client import calls, commands, processes, rundir


def test_utility_and_import_command_lines():
    argv = commands.utility_argv("py", "train", "--x", data="/d.zip", epochs=3, amp=True,
                                 lr=0.5, skip=None, off=False)  # fmt: skip
    assert argv == ["py", "-m", "trainer", "utility", "train", "--x", "--data", "/d.zip",
                    "--epochs", "3", "--amp", "--lr", "0.5"]  # fmt: skip
    assert commands.import_pkl_argv("py", "/a.pkl", "/s.pt") == [
        "py", "-m", "trainer", "import-pkl", "/a.pkl", "--out", "/s.pt", "--channels", "1"
    ]  # fmt: skip


def test_augpipe_is_passed_on_a_fresh_launch_only():
    o = {"data": "/d.zip", "resolution": 16, "kimg": 1.0, "batch": 4, "gamma": 0.1,
         "aug": "ada", "target": 0.6, "augpipe": "bgc", "mirror": False, "cond": False,
         "snap": 1, "seed": 0, "gpus": 0}  # fmt: skip
    fresh = commands.train_argv("py", o, "/runs/1", 1.0, None)
    assert fresh[fresh.index("--augpipe") + 1] == "bgc"
    assert "--augpipe" not in commands.train_argv("py", o, "/runs/1", 2.0, "latest")


def test_the_follower_reaps_its_child_and_knows_a_stranger_is_not_ours(tmp_path):
    run = tmp_path / "run"
    argv = [sys.executable, "-c", "import sys, time; time.sleep(2); sys.exit(3)",
            "trainer", str(run)]  # fmt: skip
    proc = processes.spawn(argv, run)
    follower = processes.ProcessFollower()
    follower.started(7, proc)
    assert follower.check(7, proc.pid, str(run)) == (False, None)
    assert processes.is_ours(proc.pid, str(run)) and not processes.is_ours(proc.pid, "/other")
    deadline = time.monotonic() + 10
    while not (state := follower.check(7, proc.pid, str(run)))[0]:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert state == (True, 3)
    assert (run / "worker.log").read_text().startswith("$ ")
    assert "trainer" in (run / "command.txt").read_text()
    assert not processes.is_ours(proc.pid, str(run))  # gone (a reused pid would not match)


def test_kill_tree_reaches_grandchildren(tmp_path):
    code = "import subprocess, sys, time; subprocess.Popen([sys.executable, '-c', " \
           "'import time; time.sleep(60)']); time.sleep(60)"  # fmt: skip
    proc = subprocess.Popen([sys.executable, "-c", code], start_new_session=True)
    deadline = time.monotonic() + 10
    while not processes.descendants(proc.pid):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    kids = processes.descendants(proc.pid)
    processes.kill_tree(proc.pid)
    assert proc.wait(timeout=10) == -9
    deadline = time.monotonic() + 10
    while any(processes._process(k) for k in kids):
        assert time.monotonic() < deadline, "a grandchild survived"
        time.sleep(0.05)


def test_snapshot_names_old_and_new_are_read_in_order(tmp_path):
    for name in ("snapshot-000000.pt", "snapshot-000000-000096.pt", "snapshot-000001.pt",
                 "snapshot-000002.pt.tmp", "samples-000000.png"):  # fmt: skip
        (tmp_path / name).write_bytes(b"x")
    found = [(n, p.name) for n, p in rundir.snapshot_files(str(tmp_path))]
    assert found == [(0, "snapshot-000000.pt"), (96, "snapshot-000000-000096.pt"),
                     (1000, "snapshot-000001.pt")]  # fmt: skip
    assert rundir.samples_for(tmp_path / "snapshot-000000-000096.pt").name == (
        "samples-000000-000096.png"
    )


def test_a_failed_generation_is_told_in_the_apps_words(tmp_path):
    with pytest.raises(calls.TrainerCallFailed) as err:
        calls.generate(sys.executable, str(tmp_path / "missing.pt"), "0-1", tmp_path / "out")
    assert str(err.value) == "the snapshot file is missing"
    assert "--" not in str(err.value) and str(tmp_path) not in str(err.value)
    assert "not found" in err.value.detail  # the trainer's own words, for the log


def test_user_words_never_repeat_the_trainers_flags():
    said = "error: this generator is conditional (2 classes): pass --class 0..1"
    assert calls.user_words(said, "x") == (
        "this generator is conditional: choose a class (normal or tumour)"
    )
    assert calls.user_words("error: something odd --foo", "generation failed") == (
        "generation failed"
    )
    refused = "error: refused global 'os.system' (not on the allow-list); nothing was executed"
    assert "os.system" in calls.user_words(refused, "x") and "--" not in calls.user_words(
        refused, "x"
    )


def test_disk_usage_counts_every_file(tmp_path):
    (tmp_path / "a").write_bytes(b"x" * 10)
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b").write_bytes(b"y" * 5)
    assert rundir.disk_usage(str(tmp_path)) == 15
    assert rundir.disk_usage(str(Path(tmp_path) / "none")) == 0
