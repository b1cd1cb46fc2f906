"""Shared trainer fixtures: a tiny phantom dataset zip and one tiny trained snapshot."""

from __future__ import annotations

import contextlib

import pytest
import torch

from tests.trainer.helpers import TINY
from tests.trainer.zipdata import phantom_zip

PROVENANCE = {
    "dataset_version": 1,
    "content_hash": "test",
    "window": {"width": 400, "level": 50},
    "hu_range": [-1024, 3071],
}


@contextlib.contextmanager
def single_thread():
    """Tiny networks run fastest on one thread, above all on a busy shared machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@pytest.fixture
def one_thread():
    with single_thread():
        yield


@pytest.fixture(scope="session")
def tiny_zip(tmp_path_factory) -> str:
    """16 phantom slices, 16x16, 8-bit, labelled 0/1, with a medsynth.json (abdomen window)."""
    return phantom_zip(
        tmp_path_factory.mktemp("data") / "tiny.zip", n=16, res=16, provenance=PROVENANCE
    )


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory, tiny_zip) -> str:
    """Run directory of a finished 64-image run (in-process, a couple of seconds)."""
    from trainer.cli import main

    run_dir = str(tmp_path_factory.mktemp("run"))
    with single_thread():
        rc = main(
            [
                "train",
                "--data",
                tiny_zip,
                "--outdir",
                run_dir,
                "--kimg",
                "0.064",
                "--tick",
                "0.032",
                "--snap",
                "1",
                *TINY,
            ]
        )
    assert rc == 0
    return run_dir
