"""Classifier two-sample test: a small CNN learns to tell real slices from generated ones under
k-fold cross-validation; held-out accuracy near 50% means it cannot (the automatic fake
detector the source study asked for). Accuracy pools every held-out prediction, with a Wilson
95% interval and a two-sided binomial p-value against 50%.
"""

from __future__ import annotations

import contextlib
import math

import numpy as np
import torch
from scipy.stats import binomtest
from torch import nn

from trainer.metrics.inputs import Progress, downsample

C2ST_RESOLUTION = 64  # slices are area-downsampled to at most this: fast on a CPU
Z95 = 1.959963984540054
MIN_STEPS = 200  # small datasets train for more epochs, so the classifier gets a fair chance


class SmallCNN(nn.Module):
    """Three strided 4x4 convs (16-32-64 channels; 5x faster on a CPU than conv + pooling),
    global average pooling and a linear real/fake logit."""

    def __init__(self, channels: int = 1, width: int = 16):
        super().__init__()
        layers: list[nn.Module] = []
        c = channels
        for k in (1, 2, 4):
            layers += [nn.Conv2d(c, width * k, 4, stride=2, padding=1), nn.LeakyReLU(0.2)]
            c = width * k
        self.features = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = nn.Linear(c, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [N, C, S, S] -> [N]
        return self.head(self.features(x)).squeeze(1)


def wilson_interval(correct: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion (sound near 0% and 100%)."""
    if n == 0:
        return 0.0, 1.0
    p = correct / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def _prepare(images: np.ndarray, idx: np.ndarray, size: int) -> torch.Tensor:
    return downsample(images[np.sort(idx)], size) / 127.5 - 1  # [n, C, s, s] in [-1, 1]


def _fold_ids(n_per_class: int, folds: int, rng: np.random.Generator) -> np.ndarray:
    """Stratified folds: each class spread evenly over the folds, in random order."""
    ids = [rng.permutation(np.arange(n_per_class) % folds) for _ in range(2)]
    return np.concatenate(ids)


@contextlib.contextmanager
def _single_thread(device: torch.device):
    """A net this small runs fastest on one CPU thread: with two threads on a busy machine
    the per-op synchronisation made it 50x slower. Restores the thread count after."""
    if torch.device(device).type != "cpu":
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _train_eval(x, y, train, test, *, seed, epochs, batch, lr, device) -> np.ndarray:
    """Fit a fresh SmallCNN on `train`, return its 0/1 correctness on `test`."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = SmallCNN(x.shape[1]).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    rng = np.random.default_rng(seed)
    xd, yd = x.to(device), y.to(device)
    epochs = max(epochs, math.ceil(MIN_STEPS / math.ceil(len(train) / batch)))
    model.train()
    for _ in range(epochs):
        order = rng.permutation(train)
        for start in range(0, len(order), batch):
            b = torch.as_tensor(order[start : start + batch], device=device)
            loss = nn.functional.binary_cross_entropy_with_logits(model(xd[b]), yd[b])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    model.eval()
    with torch.no_grad():
        pred = model(xd[torch.as_tensor(test, device=device)]) > 0
    return (pred.float() == yd[torch.as_tensor(test, device=device)]).cpu().numpy()


def c2st(
    real: np.ndarray,
    generated: np.ndarray,
    *,
    folds: int = 5,
    size: int = C2ST_RESOLUTION,
    epochs: int = 15,
    batch: int = 32,
    lr: float = 1e-3,
    max_per_class: int = 5000,
    seed: int = 0,
    device: str | torch.device = "cpu",
    progress: Progress | None = None,
) -> dict:
    """Held-out accuracy of telling `real` from `generated` (uint8 `[N, C, R, R]` each),
    balanced by drawing the same number from each."""
    rng = np.random.default_rng([seed, 3])
    n = min(len(real), len(generated), max_per_class)
    if n < folds:
        raise ValueError(f"C2ST needs at least {folds} images per side, got {n}")
    s = min(size, real.shape[-1])
    x = torch.cat([
        _prepare(real, rng.choice(len(real), n, replace=False), s),
        _prepare(generated, rng.choice(len(generated), n, replace=False), s),
    ])  # fmt: skip  # [2n, C, s, s]
    y = torch.cat([torch.ones(n), torch.zeros(n)])  # 1 = real
    fold_of = _fold_ids(n, folds, rng)
    fold_acc, correct = [], 0
    for k in range(folds):
        test, train = np.flatnonzero(fold_of == k), np.flatnonzero(fold_of != k)
        with _single_thread(device):
            ok = _train_eval(x, y, train, test, seed=seed * 1000 + k, epochs=epochs,
                             batch=batch, lr=lr, device=device)  # fmt: skip
        fold_acc.append(float(ok.mean()))
        correct += int(ok.sum())
        if progress:
            progress("c2st", k + 1, folds)
    total = 2 * n
    lo, hi = wilson_interval(correct, total)
    return {
        "accuracy": correct / total, "ci95": [lo, hi], "ci_method": "wilson",
        "p_value": float(binomtest(correct, total, 0.5).pvalue),
        "fold_accuracy": fold_acc, "folds": folds, "n_real": n, "n_generated": n,
        "resolution": s, "epochs": epochs, "min_steps": MIN_STEPS, "seed": seed,
        "classifier": f"SmallCNN 16-32-64, Adam lr {lr:g}, batch {batch}",
    }  # fmt: skip
