"""Per-tick statistics and the run directory's human and machine logs (log.txt, stats.jsonl)."""

from __future__ import annotations

import json
import math
import os
import sys
import time
from typing import Any

import torch

from trainer.distributed import all_reduce_sum


class TickStats:
    """Running sums of phase statistics on the device; read (and reduced) once per tick."""

    def __init__(self) -> None:
        self.sums: dict[str, torch.Tensor] = {}
        self.counts: dict[str, int] = {}

    def add(self, stats: dict[str, torch.Tensor]) -> None:
        for k, v in stats.items():
            v = v.detach().double().reshape([])
            self.sums[k] = self.sums[k] + v if k in self.sums else v.clone()
            self.counts[k] = self.counts.get(k, 0) + 1

    def means(self) -> dict[str, float | None]:
        """Means over the tick and over ranks (every rank must call it)."""
        keys = sorted(self.sums)
        if not keys:
            return {}
        device = self.sums[keys[0]].device
        flat = torch.stack(
            [self.sums[k] for k in keys]
            + [torch.tensor(float(self.counts[k]), device=device).double() for k in keys]
        )
        flat = all_reduce_sum(flat).cpu().tolist()
        n = len(keys)
        return {k: flat[i] / flat[n + i] if flat[n + i] else None for i, k in enumerate(keys)}

    def reset(self) -> None:
        self.sums.clear()
        self.counts.clear()

    def state_dict(self) -> dict[str, Any]:
        return {"sums": {k: v.cpu() for k, v in self.sums.items()}, "counts": dict(self.counts)}

    def load_state_dict(self, state: dict[str, Any], device: torch.device) -> None:
        self.sums = {k: v.to(device) for k, v in state["sums"].items()}
        self.counts = dict(state["counts"])


def _clean(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


class RunLog:
    """Writes log.txt (flushed per line, echoed to stdout) and stats.jsonl; silent off rank 0."""

    def __init__(self, run_dir: str | None, echo: bool = True) -> None:
        self.run_dir, self.echo = run_dir, echo
        self._log = open(os.path.join(run_dir, "log.txt"), "a", buffering=1) if run_dir else None

    def line(self, msg: str, stderr: bool = False) -> None:
        text = f"{time.strftime('%Y-%m-%d %H:%M:%S')} {msg}"
        if self._log is not None:
            try:
                self._log.write(text + "\n")
                self._log.flush()
            except OSError:
                pass
        if self.echo or stderr:
            print(text, file=sys.stderr if stderr else sys.stdout, flush=True)

    def stats(self, record: dict[str, Any]) -> None:
        if self.run_dir is None:
            return
        data = json.dumps({k: _clean(v) for k, v in record.items()}, allow_nan=False)
        try:
            with open(os.path.join(self.run_dir, "stats.jsonl"), "a") as f:
                f.write(data + "\n")
        except OSError as e:
            self.line(f"warning: could not append to stats.jsonl ({e})")

    def close(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None
