"""A stop request that does not wait for a slow minibatch, and per-step progress for the app.

On a CPU one minibatch of the default network takes tens of seconds to minutes, so a stop
checked only between minibatches (or ticks) waits that long. Here a stop request interrupts
the minibatch at the next layer: every module with parameters in G and D gets a forward
pre-hook, and every parameter a gradient hook (for the backward passes), that raise
StepInterrupted once the flag is set. The whole training state
was cloned when the minibatch began, so it is put back exactly (weights, optimizers, ADA,
counters, sampler, RNG) and the stop snapshot is the state after the last complete minibatch:
a resume repeats the interrupted one and matches a run that never stopped.

Only for one process (DDP ranks must agree on every step) and without torch.compile; on a GPU
only once a minibatch has taken longer than SLOW_S (the clone is then cheap in comparison).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch

from trainer import snapshot

SLOW_S = 2.0
PROGRESS_EVERY_S = 1.0


class StepInterrupted(Exception):
    """Raised inside a minibatch when a stop was requested."""


@contextmanager
def interruptible(net: torch.nn.Module, stop) -> Iterator[bool]:
    """Lets a stop request end work on `net` (e.g. a sample grid of G_ema) at the next layer;
    the caller catches StepInterrupted."""

    def check(module, args) -> None:
        if stop.requested:
            raise StepInterrupted

    handles = [m.register_forward_pre_hook(check) for m in net.modules()
               if next(m.parameters(recurse=False), None) is not None]  # fmt: skip
    try:
        yield True
    finally:
        for h in handles:
            h.remove()


def _clone(obj: Any) -> Any:
    if isinstance(obj, torch.Tensor):
        return obj.detach().clone()
    if isinstance(obj, dict):
        return {k: _clone(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return type(obj)(_clone(v) for v in obj)
    return obj


class StepGuard:
    """Runs minibatches so that a stop request interrupts them; writes progress.json."""

    def __init__(self, trainer, stop, run_dir: str | None, world_size: int, compiled: bool):
        self.trainer, self.stop, self.run_dir = trainer, stop, run_dir
        self.enabled = world_size == 1 and not compiled
        self.cpu = trainer.device.type == "cpu"
        self.armed = False
        self.last_step_s = 0.0
        self._written = 0.0
        self._handles = []
        if self.enabled:
            for net in (trainer.G, trainer.D):
                for m in net.modules():
                    if next(m.parameters(recurse=False), None) is not None:
                        self._handles.append(m.register_forward_pre_hook(self._check))
                for p in net.parameters():  # backward passes: as each gradient is computed
                    was = p.requires_grad
                    p.requires_grad_(True)  # a hook needs it; it stays when switched off
                    self._handles.append(p.register_hook(self._check_grad))
                    p.requires_grad_(was)

    def _check(self, module, args) -> None:
        if self.armed and self.stop.requested:
            raise StepInterrupted

    def _check_grad(self, grad: torch.Tensor) -> None:
        if self.armed and self.stop.requested:
            raise StepInterrupted

    def step(self) -> bool:
        """One minibatch; False when a stop request interrupted it (the state is as before)."""
        guard = self.enabled and (self.cpu or self.last_step_s > SLOW_S)
        saved = (_clone(self.trainer.state_dict()), snapshot.capture_rng()) if guard else None
        t0 = time.time()
        self.armed = guard
        try:
            self.trainer.step()
        except StepInterrupted:
            self.armed = False
            self._restore(saved)
            return False
        finally:
            self.armed = False
        self.last_step_s = time.time() - t0
        self.write_progress()
        return True

    def _restore(self, saved: tuple[dict, dict]) -> None:
        state, rng = saved
        t = self.trainer
        t.load_state_dict(state)
        for net in (t.G, t.D):
            net.requires_grad_(False)
            for p in net.parameters():
                p.grad = None
        snapshot.restore_rng(rng)

    def write_progress(self, stopping: bool = False, force: bool = False) -> None:
        """progress.json (atomic, at most once a second): the app's per-step progress."""
        now = time.time()
        if self.run_dir is None or (not force and now - self._written < PROGRESS_EVERY_S):
            return
        t = self.trainer
        doc = {"cur_nimg": t.cur_nimg, "batch_idx": t.batch_idx, "batch": t.cfg.train.batch,
               "sec_per_step": round(self.last_step_s, 3), "stopping": stopping,
               "time": now}  # fmt: skip
        tmp = os.path.join(self.run_dir, ".progress.json.tmp")
        try:
            with open(tmp, "w") as f:
                json.dump(doc, f)
            os.replace(tmp, os.path.join(self.run_dir, "progress.json"))
            self._written = now
        except OSError:
            pass  # progress is a courtesy; a full disk must not stop training

    def close(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()
