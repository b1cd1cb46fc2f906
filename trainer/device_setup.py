"""The torch device a training process runs on, set up once: shared by `train` (cli.py) and the
speed probe (`info speed`), which must measure on the same settings the run will use."""

from __future__ import annotations

import os

from trainer import distributed
from trainer.options import UsageError


def training_device(name: str):
    """The torch device (a usage error when CUDA is asked for but absent), TF32 on CUDA."""
    import torch

    try:
        device = distributed.pick_device(name, int(os.environ.get("LOCAL_RANK", "0")))
    except ValueError as e:
        raise UsageError(str(e)) from e
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True
    return device
