"""The two downstream tasks, trained the same way for every arm: MONAI's 2D U-Net with Dice
loss (liver and tumour segmentation, scored by Dice) and a small CNN classifier (tumour vs
normal, scored by ROC AUC). Seeded generators only, so a seed gives the same numbers."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from trainer.utility.data import Samples

NUM_CLASSES = 3  # background, liver, tumour


@dataclass(frozen=True)
class TrainSpec:
    steps: int = 300
    batch: int = 16
    lr: float = 2e-3
    channels: tuple[int, ...] = (8, 16, 32, 64)


def build_model(task: str, res: int, spec: TrainSpec) -> torch.nn.Module:
    """MONAI's U-Net (segmentation) or its strided-conv Classifier (one logit)."""
    from monai.networks.nets import Classifier, UNet

    depth = min(len(spec.channels), int(math.log2(res)) - 1)
    channels, strides = spec.channels[:depth], (2,) * (depth - 1)
    if task == "segmentation":
        return UNet(spatial_dims=2, in_channels=1, out_channels=NUM_CLASSES,
                    channels=channels, strides=strides, num_res_units=1)  # fmt: skip
    return Classifier(in_shape=(1, res, res), classes=1, channels=channels,
                      strides=(2,) * depth, num_res_units=1)  # fmt: skip


def augment(x: torch.Tensor, m: torch.Tensor, gen: torch.Generator) -> tuple:
    """Standard augmentation: x-flip, rotation ±10°, scale 0.9-1.1, brightness ±0.1 and
    contrast 0.9-1.1; the label map follows the geometry with nearest neighbour."""
    n = x.shape[0]
    u = torch.rand(n, 5, generator=gen)
    flip = torch.where(u[:, 0] < 0.5, -1.0, 1.0)
    angle = (u[:, 1] * 2 - 1) * math.radians(10)
    scale = 0.9 + 0.2 * u[:, 2]
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack([torch.stack([cos * flip, -sin, torch.zeros(n)], 1),
                         torch.stack([sin * flip, cos, torch.zeros(n)], 1)], 1)  # fmt: skip
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    x = F.grid_sample(x + 1, grid, mode="bilinear", align_corners=False) - 1  # air outside
    m = F.grid_sample(m[:, None].float(), grid, mode="nearest", align_corners=False)[:, 0]
    bright = ((u[:, 3] * 2 - 1) * 0.1).view(-1, 1, 1, 1)
    contrast = (0.9 + 0.2 * u[:, 4]).view(-1, 1, 1, 1)
    return (x * contrast + bright).clamp(-1, 1), m.long()


def _loss(task: str, model, x, m, c, dice_loss) -> torch.Tensor:
    out = model(x)
    if task == "segmentation":
        return dice_loss(out, m[:, None]) + F.cross_entropy(out, m)
    return F.binary_cross_entropy_with_logits(out[:, 0], c.float())


def train(task: str, data: Samples, spec: TrainSpec, seed: int, aug: bool,
          device="cpu", on_step=None) -> torch.nn.Module:  # fmt: skip
    """`spec.steps` Adam steps on minibatches drawn uniformly from `data` (seeded)."""
    from monai.losses import DiceLoss

    torch.manual_seed(seed)  # MONAI layers initialise from the global generator
    model = build_model(task, data.images.shape[-1], spec).to(device).train()
    opt = torch.optim.Adam(model.parameters(), lr=spec.lr)
    gen = torch.Generator().manual_seed(seed)
    dice = DiceLoss(include_background=False, to_onehot_y=True, softmax=True)
    for step in range(spec.steps):
        i = torch.randint(0, len(data), (spec.batch,), generator=gen)
        x, m, c = data.images[i], data.masks[i], data.classes[i]
        if aug:
            x, m = augment(x, m, gen)
        loss = _loss(task, model, x.to(device), m.to(device), c.to(device), dice)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if on_step:
            on_step(step + 1)
    return model.eval()


@torch.no_grad()
def predict(model: torch.nn.Module, images: torch.Tensor, device="cpu", batch: int = 64):
    outs = [model(images[i : i + batch].to(device)).float().cpu()
            for i in range(0, len(images), batch)]  # fmt: skip
    return torch.cat(outs)


def dice_per_slice(pred: torch.Tensor, truth: torch.Tensor) -> dict[str, np.ndarray]:
    """Per-slice Dice (MONAI DiceMetric) of liver (label >= 1: liver with its tumours) and of
    tumour (label 2); a slice where truth and prediction are both empty scores 1."""
    from monai.metrics import DiceMetric

    metric = DiceMetric(include_background=True, reduction="none", ignore_empty=False)
    out = {}
    for name, lo in (("liver", 1), ("tumour", 2)):
        p, t = (pred >= lo).float()[:, None], (truth >= lo).float()[:, None]
        out[name] = metric(p, t)[:, 0].numpy().astype(float)
    return out


def score(task: str, model, test: Samples, device="cpu") -> dict[str, np.ndarray]:
    """Per-slice scores on the test set: Dice arrays, or tumour probabilities."""
    out = predict(model, test.images, device)
    if task == "segmentation":
        return dice_per_slice(out.argmax(1), test.masks)
    return {"probability": torch.sigmoid(out[:, 0]).numpy().astype(float)}
