"""Tiny dataset zips for trainer tests: phantom-like slices (soft ellipse body, bright discs)."""

from __future__ import annotations

import io
import json
import zipfile

import numpy as np
from PIL import Image


def phantom_images(n: int, res: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """[n, res, res] floats in [0, 1] and labels [n] (1 = has a bright 'lesion' disc)."""
    rng = np.random.default_rng(seed)
    yy, xx = (np.mgrid[0:res, 0:res] + 0.5) / res * 2 - 1  # [-1, 1]
    imgs, labels = [], []
    for i in range(n):
        ax, ay = rng.uniform(0.6, 0.85), rng.uniform(0.45, 0.7)
        body = 1 / (1 + np.exp(((xx / ax) ** 2 + (yy / ay) ** 2 - 1) * 12))  # soft ellipse
        img = 0.05 + 0.45 * body
        lesion = i % 2
        for _ in range(1 + lesion):
            cx, cy, r = rng.uniform(-0.4, 0.4), rng.uniform(-0.3, 0.3), rng.uniform(0.12, 0.2)
            disc = ((xx - cx) ** 2 + (yy - cy) ** 2) < r**2
            img = np.where(disc, 0.9, img)
        imgs.append(np.clip(img + rng.normal(0, 0.02, img.shape), 0, 1))
        labels.append(lesion)
    return np.stack(imgs), np.array(labels)


def png_bytes(arr: np.ndarray, bits: int = 8) -> bytes:
    buf = io.BytesIO()
    if bits == 16:
        h, w = arr.shape
        Image.frombytes("I;16", (w, h), arr.astype("<u2").tobytes()).save(buf, format="PNG")
    else:
        Image.fromarray(arr.astype(np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def write_zip(
    path, images: np.ndarray, labels=None, bits: int = 8, provenance: dict | None = None
) -> str:
    """Write [n, R, R] floats in [0, 1] as a StyleGAN2-ADA dataset zip."""
    top = 255 if bits == 8 else 65535
    names = [f"img{i:08d}.png" for i in range(len(images))]
    with zipfile.ZipFile(path, "w") as zf:
        for name, img in zip(names, images, strict=True):
            zf.writestr(name, png_bytes(np.round(img * top), bits))
        meta = {
            "labels": None
            if labels is None
            else [[n, int(v)] for n, v in zip(names, labels, strict=True)]
        }
        zf.writestr("dataset.json", json.dumps(meta))
        if provenance is not None:
            zf.writestr("medsynth.json", json.dumps(provenance))
    return str(path)


def phantom_zip(
    path, n: int = 16, res: int = 16, bits: int = 8, seed: int = 0, provenance: dict | None = None
) -> str:
    imgs, labels = phantom_images(n, res, seed)
    return write_zip(path, imgs, labels, bits, provenance)
