"""Memorisation finds planted copies of training images and nothing among unrelated ones."""

from __future__ import annotations

import numpy as np
import torch

from tests.trainer.metrics_support import TinyExtractor, smooth_images
from trainer.metrics.memorization import memorization_report, nearest_by_ncc


def _features(images: np.ndarray) -> torch.Tensor:
    fe = TinyExtractor("tiny", ["feat"])
    return fe(torch.from_numpy(images).expand(-1, 3, -1, -1))[0]


def _planted() -> tuple[np.ndarray, np.ndarray]:
    real = smooth_images(30, res=32, seed=10, blur=4)
    gen = smooth_images(40, res=32, seed=11, blur=4)
    gen[5] = real[3]  # an exact copy
    noise = np.random.default_rng(0).normal(0, 6, size=real[7].shape)
    gen[9] = np.clip(real[7] + noise, 0, 255).astype(np.uint8)  # a copy with noise
    return real, gen


def test_planted_exact_and_noisy_copies_are_found():
    real, gen = _planted()
    report = memorization_report(
        gen,
        real,
        seeds=np.arange(100, 140),
        real_names=[f"r{i}" for i in range(30)],
        gen_features=_features(gen),
        real_features=_features(real),
        top_k=3,
    )
    assert report["num_copies"] == 2 and report["copy_share"] == 2 / 40
    assert report["real_copied"] == [3, 7]
    first, second = report["top_pairs"][:2]
    assert (first["sample"], first["seed"], first["real_index"]) == (5, 105, 3)
    assert first["ncc"] > 0.9999 and first["real_name"] == "r3"
    assert first["feature_real_index"] == 3 and first["feature_distance"] < 1e-6
    assert (second["sample"], second["real_index"]) == (9, 7) and second["ncc"] >= 0.95
    per = report["per_sample"]
    assert len(per["ncc"]) == 40 and per["nearest_real"][9] == 7
    assert per["feature_nearest_real"][5] == 3


def test_unrelated_images_are_not_copies():
    real = smooth_images(30, res=32, seed=20, blur=4)
    gen = smooth_images(40, res=32, seed=21, blur=4)
    report = memorization_report(gen, real, seeds=np.arange(40))
    assert report["num_copies"] == 0 and report["ncc_stats"]["max"] < 0.95


def test_correlation_ignores_brightness_and_contrast():
    real = smooth_images(5, res=16, seed=3)
    gen = (real[[2]].astype(np.float64) * 0.5 + 60).astype(np.uint8)
    idx, ncc = nearest_by_ncc(gen, real)
    assert idx[0] == 2 and ncc[0] > 0.99
