"""The training loop as a small orchestrator: for each tick, minibatches -> stats -> snapshot.

Snapshots are taken only at minibatch boundaries, and the RNG states captured for a snapshot
are put back after it is written, so a run that stops and resumes matches one that did not.
At a snapshot where FID/KID are due, the tick's stats line is written after them and holds them.
"""

from __future__ import annotations

import json
import os
import signal
import time
from dataclasses import asdict, dataclass

import torch

from trainer import distributed, snapshot
from trainer.config import RunConfig
from trainer.dataset import ImageDataset
from trainer.distributed import DistInfo
from trainer.exit_record import EXIT_STOPPED
from trainer.generate import save_sample_grid
from trainer.hu import hu_mapping
from trainer.interrupt import StepGuard, StepInterrupted, interruptible
from trainer.periodic_metrics import PeriodicMetrics
from trainer.stats import RunLog
from trainer.training import Trainer


class StopFlag:
    """SIGTERM/SIGINT set a flag; the loop stops at the next minibatch boundary, or sooner
    (trainer/interrupt.py: the current minibatch is interrupted and undone)."""

    def __init__(self) -> None:
        self.requested = False
        self.signal_name = ""
        self._old: dict[int, object] = {}

    def _handle(self, signum, frame) -> None:
        self.requested = True
        self.signal_name = signal.Signals(signum).name

    def __enter__(self) -> StopFlag:
        for sig in (signal.SIGTERM, signal.SIGINT):
            self._old[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)


@dataclass
class Progress:
    tick: int = 0  # completed ticks
    tick_start_nimg: int = 0
    tick_elapsed: float = 0.0  # seconds of the current tick already spent before a resume
    last_snapshot_nimg: int = -1


@dataclass
class Run:
    """What the loop needs besides the trainer."""

    cfg: RunConfig
    dataset: ImageDataset
    run_dir: str
    log: RunLog
    dist: DistInfo
    stop: StopFlag
    metrics: PeriodicMetrics | None = None


def _dataset_info(ds: ImageDataset) -> dict:
    return {
        "hu_mapping": hu_mapping(ds.provenance, ds.bits),
        "bits": ds.bits,
        "resolution": ds.resolution,
        "num_images": ds.num_images,
        "c_dim": ds.c_dim,
        "provenance": ds.provenance,
    }


def write_options(run: Run, trainer: Trainer) -> None:
    """options.json: the whole configuration plus dataset facts, written by rank 0."""
    if not run.dist.is_main:
        return
    info = _dataset_info(run.dataset)
    info.pop("provenance")
    doc = {
        **run.cfg.to_dict(),
        "dataset": info,
        "world_size": run.dist.world_size,
        "torch": torch.__version__,
        "device": str(trainer.device),
    }
    tmp = os.path.join(run.run_dir, "options.json.tmp")
    with open(tmp, "w") as f:
        json.dump(doc, f, indent=2)
    os.replace(tmp, os.path.join(run.run_dir, "options.json"))


def take_snapshot(run: Run, trainer: Trainer, progress: Progress, grid: bool = True) -> bool:
    """Write snapshot + sample grid (rank 0); RNG is restored afterwards on every rank.

    A stop request's snapshot has no grid (`grid=False`): drawing it can take longer on a CPU
    than the snapshot itself."""
    rng_all = distributed.gather_objects(snapshot.capture_rng())
    divergence = 0.0
    if distributed.active():  # every rank must hold the same weights: cheap to verify here
        divergence = max(distributed.max_divergence(m) for m in (trainer.G, trainer.D))
    ok = True
    if run.dist.is_main:
        if distributed.active():
            run.log.line(f"ddp check: max parameter difference between ranks {divergence:g}")
        state = trainer.state_dict()
        progress.last_snapshot_nimg = trainer.cur_nimg
        state.update(
            format=snapshot.FORMAT,
            options=run.cfg.to_dict(),
            progress=asdict(progress),
            rng=rng_all,
            world_size=run.dist.world_size,
            dataset=_dataset_info(run.dataset),
        )
        state["progress"]["cur_nimg"] = trainer.cur_nimg
        name = snapshot.snapshot_name(trainer.cur_nimg, run.run_dir)
        ok = _save(run, state, name)
        if grid:
            grid_name = name.replace("snapshot-", "samples-").replace(".pt", ".png")
            _save_grid(run, trainer, os.path.join(run.run_dir, grid_name))
    progress.last_snapshot_nimg = trainer.cur_nimg
    snapshot.restore_rng(rng_all[run.dist.rank])
    return ok


def _save(run: Run, state: dict, name: str) -> bool:
    path = os.path.join(run.run_dir, name)
    try:
        snapshot.save_atomic(state, path)
    except OSError as e:
        run.log.line(f"error: could not write {name} ({e}); older snapshots are kept", stderr=True)
        return False
    run.log.line(f"snapshot {name} written")
    return True


def _save_grid(run: Run, trainer: Trainer, path: str) -> None:
    try:
        save_sample_grid(trainer.G_ema, path, trainer.device, seed=run.cfg.train.grid_seed)
    except OSError as e:
        run.log.line(f"warning: could not write {os.path.basename(path)} ({e})")


def end_tick(run: Run, trainer: Trainer, progress: Progress, tick_time: float) -> dict:
    """Reduce the tick's statistics and log one line; returns the stats.jsonl record."""
    means = trainer.tick_stats.means()
    trainer.tick_stats.reset()
    nimg = trainer.cur_nimg - progress.tick_start_nimg
    progress.tick += 1
    progress.tick_start_nimg = trainer.cur_nimg
    progress.tick_elapsed = 0.0
    cuda = trainer.device.type == "cuda"
    mem = torch.cuda.max_memory_allocated(trainer.device) / 2**30 if cuda else 0.0
    if cuda:
        torch.cuda.reset_peak_memory_stats(trainer.device)
    rec = {
        "tick": progress.tick,
        "kimg": trainer.cur_nimg / 1000,
        "cur_nimg": trainer.cur_nimg,
        "total_kimg": run.cfg.train.total_kimg,
        "sec_per_tick": tick_time,
        "sec_per_kimg": tick_time / max(nimg / 1000, 1e-9),
        "loss_G": means.get("loss_G"),
        "loss_D": means.get("loss_D"),
        "r1": means.get("r1"),
        "pl": means.get("pl"),
        "pl_mean": means.get("pl_mean"),
        "score_real": means.get("score_real"),
        "score_fake": means.get("score_fake"),
        "augment_p": trainer.augment_p,
        "rt": means.get("rt"),
        "gpu_mem_gb": mem,
        "timestamp": time.time(),
    }
    if run.dist.is_main:
        fmt = {k: ("-" if v is None else f"{v:.4g}") for k, v in rec.items()}
        run.log.line(
            f"tick {rec['tick']} kimg {rec['kimg']:.3f} sec/kimg {fmt['sec_per_kimg']} "
            f"loss_G {fmt['loss_G']} loss_D {fmt['loss_D']} r1 {fmt['r1']} "
            f"pl {fmt['pl']} augment_p {rec['augment_p']:.4g} rt {fmt['rt']} "
            f"gpu_mem_gb {mem:.2f}"
        )
    return rec


def finish_tick(
    run: Run, trainer: Trainer, progress: Progress, tick_time: float, done: bool
) -> bool:
    """Stats line, snapshot when due, FID/KID when due; False when the final snapshot failed."""
    rec = end_tick(run, trainer, progress, tick_time)
    snap = done or progress.tick % run.cfg.train.snap_ticks == 0
    measure = snap and run.metrics is not None and run.metrics.due(progress.tick, done)
    if not measure:
        _write_stats(run, rec)
    if not snap:
        return True
    ok = take_snapshot(run, trainer, progress)
    if measure:  # the tick's line waits for its FID/KID, so the chart reads them from it
        found = run.metrics.measure(trainer.G_ema, run.dataset, trainer.device, rec["kimg"])
        _write_stats(run, rec | found)
    return ok or not done


def _write_stats(run: Run, rec: dict) -> None:
    if run.dist.is_main:
        run.log.stats(rec)


def _stop(run: Run, trainer: Trainer, progress: Progress, tick_elapsed: float) -> int:
    """Stop at this minibatch boundary with a snapshot (unless one was just written): exit
    EXIT_STOPPED, so a scheduler (or the app) knows the run is resumable, not done."""
    run.log.line(
        f"stop requested ({run.stop.signal_name or 'signal'}) at kimg {trainer.cur_nimg / 1000:.3f}"
    )
    if progress.last_snapshot_nimg == trainer.cur_nimg:
        return EXIT_STOPPED
    progress.tick_elapsed = tick_elapsed
    return EXIT_STOPPED if take_snapshot(run, trainer, progress, grid=False) else 1


def training_loop(run: Run, trainer: Trainer, progress: Progress) -> int:
    """Train until total_kimg or a stop request; returns the exit code."""
    tc = run.cfg.train
    total, tick_len = round(tc.total_kimg * 1000), tc.kimg_per_tick * 1000
    t0 = time.time() - progress.tick_elapsed
    main_dir = run.run_dir if run.dist.is_main else None
    # A stop interrupts even a slow minibatch (undone exactly); progress.json every step.
    guard = StepGuard(trainer, run.stop, main_dir, run.dist.world_size, tc.compile)
    try:
        while trainer.cur_nimg < total:
            if distributed.any_rank(run.stop.requested, trainer.device):
                guard.write_progress(stopping=True, force=True)
                return _stop(run, trainer, progress, time.time() - t0)
            if not guard.step():
                continue  # interrupted by the stop request: the check above stops
            done = trainer.cur_nimg >= total
            if trainer.cur_nimg >= progress.tick_start_nimg + tick_len or done:
                if not finish_tick(run, trainer, progress, time.time() - t0, done):
                    return 1
                t0 = time.time()
    finally:
        guard.close()
    if progress.last_snapshot_nimg != trainer.cur_nimg:
        if not take_snapshot(run, trainer, progress):
            return 1
    run.log.line(f"done: {trainer.cur_nimg / 1000:.3f} kimg")
    return 0


def start(run: Run, trainer: Trainer, state: dict | None, mode: str) -> Progress:
    """Restore a snapshot for 'resume' (everything) or 'finetune' (weights), write options."""
    progress = Progress()
    if mode == "resume" and state is not None:
        trainer.load_state_dict(state)
        saved = state["progress"]
        progress = Progress(
            tick=saved["tick"],
            tick_start_nimg=saved["tick_start_nimg"],
            tick_elapsed=saved["tick_elapsed"],
            last_snapshot_nimg=trainer.cur_nimg,
        )
        rng = state["rng"]
        if len(rng) == run.dist.world_size:
            snapshot.restore_rng(rng[run.dist.rank])
        run.log.line(f"resumed at kimg {trainer.cur_nimg / 1000:.3f} (tick {progress.tick})")
    elif mode == "finetune" and state is not None:
        trainer.load_weights(state)
        run.log.line("fine-tuning from the snapshot's weights and optimizer state")
    write_options(run, trainer)
    if mode != "resume" and run.dist.is_main:
        rng = snapshot.capture_rng()
        try:  # a stop request during start-up does not wait for the initial grid
            with interruptible(trainer.G_ema, run.stop):
                _save_grid(run, trainer, os.path.join(run.run_dir, "samples-000000.png"))
        except StepInterrupted:
            run.log.line("stop requested during start-up: initial sample grid skipped")
        snapshot.restore_rng(rng)
    return progress
