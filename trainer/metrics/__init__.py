"""Snapshot quality metrics: FID, KID, precision/recall (torch-fidelity), relative FD, PPL
(ppl2_wend), memorisation and a classifier two-sample test, as one call or one command.

    compute_metrics("snapshot-000100.pt", "data.zip", metrics=("fid", "kid"), num=2000)
    python -m trainer metrics --snapshot FILE --data DATA.zip [--metrics fid,kid,...] [--num N]
"""

from __future__ import annotations

from trainer.metrics.compute import compute_metrics, plan_weights
from trainer.metrics.evaluate import ALL_METRICS, Options, quick_fid_kid
from trainer.metrics.weights import (
    MissingWeight,
    MissingWeightsError,
    check_weights,
    fetch_weights,
    require_weights,
)

__all__ = [
    "ALL_METRICS", "MissingWeight", "MissingWeightsError", "Options", "check_weights",
    "plan_weights", "require_weights",
    "compute_metrics", "fetch_main", "fetch_weights", "main", "quick_fid_kid", "register",
]  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    """`python -m trainer metrics ...` (and `python -m trainer.metrics`)."""
    from trainer.metrics.command import main as command_main

    return command_main(argv)


def fetch_main(argv: list[str] | None = None) -> int:
    """`python -m trainer fetch-weights [--metrics ...]`: download and verify the weights."""
    from trainer.metrics.command import main as command_main

    return command_main(["fetch-weights", *(argv or [])])


def register(subparsers) -> None:
    """Add the `metrics` and `fetch-weights` subcommands to the trainer's argparse."""
    from trainer.metrics.command import register as command_register

    command_register(subparsers)
