"""What SLURM costs the app; prints one JSON line. Needs a cluster in SLURM_CONF
(`eval "$(bash tests/services/slurm.sh start)"`).

(a) Start: seconds from submission to the trainer's first progress file (progress.json or
    stats.jsonl) for the same tiny CPU trainer command, through `sbatch` (a batch script that
    `exec`s the trainer) and as a local `subprocess.Popen`; the difference is what the scheduler
    adds (target <= 5 s). The batch script also stamps when it began, which splits the added
    time into scheduling and the rest.
(b) Following: 100 held jobs (`sbatch --hold --wrap 'sleep 600'`), then one
    `squeue --jobs=<100 ids>` call and one `scontrol show job -o` call timed (wall, and CPU
    seconds of the caller and the child); at one call per 5 s polling pass that is the app's
    CPU share of one core (target < 5 %); medians of 20 calls. slurmctld's own CPU per call
    is given where its pid is readable.
    The held jobs are cancelled at the end, whatever happens.

    python bench/slurm_overhead.py [--repeat 3] [--jobs 100] [--interval 5]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.trainer.zipdata import phantom_zip  # noqa: E402

TINY = ["--cbase", "256", "--cmax", "32", "--zdim", "32", "--batch", "4", "--device", "cpu",
        "--kimg", "0.016", "--tick", "0.016", "--snap", "1"]  # fmt: skip
SQUEUE_FORMAT = "--format=%i|%T|%r|%M|%l|%N"  # id, state, reason, elapsed, limit, nodes


def _env() -> dict[str, str]:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def _trainer(data: str, run_dir: Path) -> list[str]:
    return [sys.executable, "-m", "trainer", "train", "--data", data, "--outdir", str(run_dir),
            *TINY]  # fmt: skip


def _first_progress(run_dir: Path, t0: float, timeout: float = 300) -> float:
    """Seconds from t0 until the trainer wrote its first progress."""
    files = (run_dir / "progress.json", run_dir / "stats.jsonl")
    while not any(f.exists() for f in files):
        if time.time() - t0 > timeout:
            raise RuntimeError(f"no progress in {run_dir} after {timeout} s")
        time.sleep(0.02)
    return time.time() - t0


def _run(*cmd: str) -> str:
    """Run a SLURM client; sbatch passes this environment (as the trainer's) on to the job."""
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=_env())
    if out.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}: {out.stderr.strip()}")
    return out.stdout


def _wait_gone(job: str, timeout: float = 300) -> None:
    """Until the job is no longer pending or running (the next start must find the node free)."""
    deadline = time.time() + timeout
    while _run("squeue", "--noheader", "--format=%i", f"--jobs={job}").strip():
        if time.time() > deadline:
            raise RuntimeError(f"job {job} still queued after {timeout} s")
        time.sleep(0.1)


def local_start(data: str, run_dir: Path) -> float:
    t0 = time.time()
    proc = subprocess.Popen(_trainer(data, run_dir), cwd=REPO, env=_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        return _first_progress(run_dir, t0)
    finally:
        proc.wait(timeout=300)


def slurm_start(data: str, run_dir: Path) -> tuple[float, float]:
    """(submission -> first progress, submission -> batch script running) in seconds."""
    run_dir.mkdir(parents=True)
    script = run_dir / "job.sh"
    cmd = " ".join(_trainer(data, run_dir))
    script.write_text(f"#!/bin/bash\n#SBATCH --output={run_dir}/slurm-%j.out\n"
                      f"date +%s.%N > {run_dir}/began\nexec {cmd}\n")  # fmt: skip
    t0 = time.time()
    job = _run("sbatch", "--parsable", f"--chdir={REPO}", str(script)).strip().split(";")[0]
    try:
        first = _first_progress(run_dir, t0)
        return first, float((run_dir / "began").read_text()) - t0
    finally:
        _wait_gone(job)


def _cpu() -> float:
    """CPU seconds of this process and its finished children: the caller's fork/exec and
    output parsing count as much as the client's own work."""
    total = 0.0
    for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
        r = resource.getrusage(who)
        total += r.ru_utime + r.ru_stime
    return total


def _timed(*cmd: str) -> tuple[float, float, int]:
    """(wall s, CPU s of caller + child, output lines) of one call."""
    cpu0, t0 = _cpu(), time.perf_counter()
    out = _run(*cmd)
    wall = time.perf_counter() - t0
    return wall, _cpu() - cpu0, len(out.splitlines())


def _ctld_cpu() -> float | None:
    """slurmctld's CPU seconds so far, from the pid file its slurm.conf names (None if unknown)."""
    try:
        conf = Path(os.environ["SLURM_CONF"]).read_text().splitlines()
        pidfile = next(ln.split("=", 1)[1] for ln in conf if ln.startswith("SlurmctldPidFile="))
        fields = Path(f"/proc/{Path(pidfile).read_text().strip()}/stat").read_text().split()
        return (int(fields[13]) + int(fields[14])) / os.sysconf("SC_CLK_TCK")
    except (KeyError, OSError, StopIteration, ValueError):
        return None


def follow_cost(n: int, interval: float, repeat: int) -> dict:
    jobs: list[str] = []
    try:
        t0 = time.time()
        for _ in range(n):
            out = _run("sbatch", "--parsable", "--hold", "--output=/dev/null", "--wrap=sleep 600")
            jobs.append(out.strip().split(";")[0])
        submit_s = time.time() - t0
        calls = {"squeue": ["squeue", "--noheader", SQUEUE_FORMAT, f"--jobs={','.join(jobs)}"],
                 "scontrol": ["scontrol", "show", "job", "-o"]}  # fmt: skip
        res: dict = {"jobs": n, "submit_s": round(submit_s, 2), "interval_s": interval}
        for name, cmd in calls.items():
            ctld0 = _ctld_cpu()
            samples = [_timed(*cmd) for _ in range(repeat)]
            ctld1 = _ctld_cpu()
            assert all(lines >= n for _, _, lines in samples), f"{name} did not list every job"
            wall = statistics.median(s[0] for s in samples)
            cpu = statistics.median(s[1] for s in samples)
            res[name] = {"wall_s": round(wall, 4), "cpu_s": round(cpu, 4),
                         "cpu_pct_of_core": round(100 * cpu / interval, 3)}  # fmt: skip
            if ctld0 is not None and ctld1 is not None:
                res[name]["slurmctld_cpu_s"] = round((ctld1 - ctld0) / repeat, 4)
        return res
    finally:
        for i in range(0, len(jobs), 50):  # one scancel call per 50 ids
            subprocess.run(["scancel", *jobs[i : i + 50]], capture_output=True, timeout=120)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeat", type=int, default=3, help="starts of each kind (median)")
    ap.add_argument("--jobs", type=int, default=100, help="held jobs to follow")
    ap.add_argument("--interval", type=float, default=5.0, help="polling interval, s")
    args = ap.parse_args()
    if not os.environ.get("SLURM_CONF"):
        sys.exit('start the test cluster: eval "$(bash tests/services/slurm.sh start)"')
    with tempfile.TemporaryDirectory(prefix="slurm-bench-") as tmp:
        root = Path(tmp)
        data = phantom_zip(root / "tiny.zip", n=16, res=16)
        local, slurm, began = [], [], []
        for i in range(args.repeat):  # interleaved, so a load change hits both alike
            local.append(local_start(data, root / f"local{i}"))
            first, start = slurm_start(data, root / f"slurm{i}")
            slurm.append(first)
            began.append(start)
        follow = follow_cost(args.jobs, args.interval, 20)
    med = statistics.median
    result = {
        "bench": "slurm_overhead",
        "start_local_s": round(med(local), 2),
        "start_slurm_s": round(med(slurm), 2),
        "start_added_s": round(med(slurm) - med(local), 2),
        "submit_to_script_s": round(med(began), 2),
        "start_runs": {
            "local": [round(x, 2) for x in local],
            "slurm": [round(x, 2) for x in slurm],
        },  # fmt: skip
        "follow": follow,
        "load1": round(os.getloadavg()[0], 2),
        "cpus": os.cpu_count(),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
