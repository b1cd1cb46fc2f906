"""PPL (ppl2_wend) with a stand-in similarity: finite, positive, and sensitive to epsilon."""

from __future__ import annotations

import math

import torch
import torch_fidelity.sample_similarity_lpips as tf_lpips
import torchvision

from tests.trainer.metrics_support import tiny_generator
from trainer.metrics.ppl import lpips_similarity, path_distances, perceptual_path_length


class PooledSquaredDistance(torch.nn.Module):
    """An LPIPS-like stand-in: squared distance of 4x4-pooled, scaled images."""

    name = "pooled-l2 (test)"

    def forward(self, a, b):
        pa, pb = (torch.nn.functional.avg_pool2d(x / 255, 4) for x in (a, b))
        return (pa - pb).square().flatten(1).sum(1)


def test_ppl_is_finite_positive_and_named():
    G = tiny_generator()
    out = perceptual_path_length(G, 40, similarity=PooledSquaredDistance(), batch=16, seed=1)
    assert math.isfinite(out["mean"]) and out["mean"] > 0 and out["std"] >= 0
    assert out["variant"] == "ppl2_wend" and out["space"] == "w" and out["epsilon"] == 1e-4
    assert out["similarity"] == "pooled-l2 (test)" and out["num_kept"] <= 40


def test_end_point_distances_scale_as_a_derivative():
    """d/eps^2 with a squared distance estimates |dG/dw|^2: about the same for two small eps."""
    G = tiny_generator(seed=3)
    sim = PooledSquaredDistance()
    d1 = path_distances(G, 16, sim, epsilon=1e-3, seed=2).mean()
    d2 = path_distances(G, 16, sim, epsilon=1e-4, seed=2).mean()
    assert d1 > 0 and abs(d1 - d2) / d1 < 0.2


def test_conditional_generator_keeps_the_class_along_the_path():
    G = tiny_generator(c_dim=2)
    out = perceptual_path_length(
        G,
        12,
        similarity=PooledSquaredDistance(),
        sampling="full",
        labels=torch.tensor([0, 1, 1]).numpy(),
    )
    assert out["variant"] == "ppl2_wfull" and out["mean"] > 0


def test_torch_fidelity_lpips_module_takes_our_float_images(monkeypatch):
    """The real SampleSimilarityLPIPS class, given random weights instead of downloads."""
    chans = [64, 128, 256, 512, 512]
    lins = {f"lin{k}.model.1.weight": torch.rand([1, c, 1, 1]) for k, c in enumerate(chans)}
    monkeypatch.setattr(tf_lpips, "load_state_dict_from_url", lambda *a, **k: lins)
    monkeypatch.setattr(tf_lpips, "torchvision_load_pretrained_vgg16", torchvision.models.vgg16)
    lpips = lpips_similarity(16, torch.device("cpu"))
    assert lpips.sample_similarity_resize is None and lpips.sample_similarity_dtype is None
    out = perceptual_path_length(tiny_generator(), 6, similarity=lpips, batch=6)
    assert math.isfinite(out["mean"]) and out["mean"] > 0
