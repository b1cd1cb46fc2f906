"""Routes that start trainer processes: one bounded queue per kind, per-user limits, and the
metric plan measured once while concurrent askers wait for it (issue 21 item 4).

The app's python is a real wrapper script that writes one line per process it starts and then
waits for a release file before running the real trainer, so the test counts spawns and holds
a measurement in flight for as long as it needs, without timing assumptions.
"""

from __future__ import annotations

import stat
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path

import httpx
import pytest

from tests.app.metric_helpers import TINY_EXTRACTOR_MODULE
from tests.app.study_setup import add_world, tiny_run_fixture  # noqa: F401  (tiny_run)


@pytest.fixture
def wrapper(tmp_path: Path) -> tuple[Path, Path, Path]:
    log, release = tmp_path / "spawned.log", tmp_path / "release"
    script = tmp_path / "python-wrapper.sh"
    script.write_text(
        "#!/bin/sh\n"
        f'echo "$*" >> "{log}"\n'
        f'while [ ! -e "{release}" ]; do sleep 0.05; done\n'
        f'exec "{sys.executable}" "$@"\n'
    )
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return script, log, release


@pytest.fixture
def settings(settings, wrapper):
    return replace(
        settings, python_executable=str(wrapper[0]), metrics_extractor_module=TINY_EXTRACTOR_MODULE
    )


def _plans_spawned(log: Path) -> int:
    if not log.exists():
        return 0
    return sum("metrics plan" in line for line in log.read_text().splitlines())


def _wait_for(predicate, what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def _get_all(live_app, url: str, n: int) -> tuple[list[threading.Thread], list]:
    """`n` GETs of `url` as reader1, each on its own thread; the answers fill the list."""
    out: list[httpx.Response | None] = [None] * n

    def one(i: int) -> None:
        auth = {"Authorization": f"Bearer {live_app.tokens['reader1']}"}
        with httpx.Client(base_url=live_app.url, headers=auth, timeout=600) as c:
            out[i] = c.get(url)  # a measurement on a busy machine may take minutes

    threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    return threads, out


def test_ten_parallel_plan_requests_start_one_process(live_app, tiny_run, wrapper):
    _, log, release = wrapper
    sid = add_world(live_app.sessions, live_app.settings.data_dir / "w1", tiny_run).snapshot_id
    threads, answers = _get_all(live_app, f"/api/snapshots/{sid}/metrics/plan", 10)
    _wait_for(lambda: _plans_spawned(log) >= 1, "the plan process to start")
    release.touch()
    for t in threads:
        t.join(timeout=300)
    assert _plans_spawned(log) == 1
    ok = [r for r in answers if r.status_code == 200]
    assert all(r.status_code in (200, 429) for r in answers), [r.text for r in answers]
    assert ok and all(r.json() == ok[0].json() for r in ok)
    assert ok[0].json()["error"] is None


def test_a_second_measurement_by_the_same_user_is_429_while_one_runs(live_app, tiny_run, wrapper):
    _, log, release = wrapper
    first = add_world(live_app.sessions, live_app.settings.data_dir / "w1", tiny_run).snapshot_id
    second = add_world(live_app.sessions, live_app.settings.data_dir / "w2", tiny_run).snapshot_id
    threads, answers = _get_all(live_app, f"/api/snapshots/{first}/metrics/plan", 1)
    _wait_for(lambda: _plans_spawned(log) >= 1, "the plan process to start")
    with live_app.client("reader1") as c:
        r = c.get(f"/api/snapshots/{second}/metrics/plan")
    assert r.status_code == 429, r.text
    assert "metric plan measurement" in r.json()["detail"] and "per user" in r.json()["detail"]
    assert r.headers.get("retry-after")
    release.touch()
    threads[0].join(timeout=300)
    assert answers[0].status_code == 200 and _plans_spawned(log) == 1
    with live_app.client("reader1") as c:  # the place is free again
        assert c.get(f"/api/snapshots/{second}/metrics/plan").status_code == 200
    assert _plans_spawned(log) == 2
