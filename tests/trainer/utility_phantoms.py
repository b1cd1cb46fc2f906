"""Dataset zips with label maps from the CT phantom, for utility tests and bench/utility.py.

Each phantom seed is one "patient" (one source volume); slices are the liver window of the
axial phantom at the zip's resolution, with the phantom's labels (1 liver, 2 tumour) beside them.
"""

from __future__ import annotations

import hashlib
import io
import json
import zipfile

import numpy as np

from tests.trainer.zipdata import png_bytes

LIVER_WINDOW = (-45.0, 105.0)  # W 150, L 30


def phantom_slices(seed: int, res: int, slices: int = 14) -> tuple[np.ndarray, np.ndarray]:
    """uint8 images and label maps [n, res, res] of the slices of one phantom that show liver."""
    from app.phantom.volume import make_phantom

    p = make_phantom(seed, size=res, slices=slices, tumours=int(seed % 3 != 0))
    lo, hi = LIVER_WINDOW
    imgs, masks = [], []
    for k in range(p.hu.shape[2]):
        labels = p.labels[::-1, ::-1, k].T  # display orientation, as the export does
        if not (labels > 0).any():
            continue
        hu = p.hu[::-1, ::-1, k].T.astype(np.float32)
        imgs.append(np.clip(np.rint((hu - lo) * 255 / (hi - lo)), 0, 255).astype(np.uint8))
        masks.append(labels.astype(np.uint8))
    return np.stack(imgs), np.stack(masks)


def _npy(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(arr, np.uint8), allow_pickle=False)
    return buf.getvalue()


def pair_zip(path, seeds: list[int], res: int = 32, slices: int = 14, shuffle_masks: bool = False,
             dataset_id: int = 1, limit: int | None = None) -> str:  # fmt: skip
    """A zip in the export's layout (PNG + .mask.npy + dataset.json + medsynth.json) from one
    volume per seed; `shuffle_masks` pairs every image with another slice's label map."""
    images, masks, prov = [], [], []
    for seed in seeds:
        imgs, labs = phantom_slices(seed, res, slices)
        sha = hashlib.sha256(f"phantom-{seed}".encode()).hexdigest()
        for k in range(len(imgs)):
            prov.append({"volume_id": 1000 + seed, "source_sha256": sha, "slice_index": k})
        images.extend(imgs)
        masks.extend(labs)
    images, masks, prov = images[:limit], masks[:limit], prov[:limit]
    if shuffle_masks:
        order = np.random.default_rng(0).permutation(len(masks))
        masks = [masks[i] for i in order]
    names = [f"img{i:08d}.png" for i in range(len(images))]
    labels = [int((m == 2).any()) for m in masks]
    for i, name in enumerate(names):
        prov[i].update(file=name, label=labels[i], mask={"file": name[:-4] + ".mask.npy"})
    meta = {"labels": [[n, v] for n, v in zip(names, labels, strict=True)]}
    doc = {"format": "medsynth-dataset/1", "dataset_id": dataset_id, "images": prov,
           "content_hash": hashlib.sha256(repr((seeds, res, shuffle_masks)).encode()).hexdigest(),
           "masks": {"format": "npy", "labels": {"0": "background", "1": "liver", "2": "tumour"}},
           "pixel_spacing_mm": [0.75, 0.75], "hu_mapping": {"lo": -45.0, "hi": 105.0}}  # fmt: skip
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("dataset.json", json.dumps(meta))
        for name, img, mask in zip(names, images, masks, strict=True):
            zf.writestr(name, png_bytes(img))
            zf.writestr(name[:-4] + ".mask.npy", _npy(mask))
        zf.writestr("medsynth.json", json.dumps(doc))
    return str(path)


def disc_zip(path, n: int = 64, res: int = 16, seed: int = 0) -> str:
    """The simplest paired data: a soft body with one bright disc, the disc labelled liver (1);
    images with a second small disc inside the first are tumour slices (label 2 there)."""
    from tests.trainer.zipdata import phantom_images

    rng = np.random.default_rng(seed)
    yy, xx = (np.mgrid[0:res, 0:res] + 0.5) / res * 2 - 1
    body, _ = phantom_images(n, res, seed)
    images, masks = [], []
    for i in range(n):
        side = 1 if rng.random() < 0.5 else -1  # left or right: positions a G must follow
        cx, cy, r = side * rng.uniform(0.3, 0.45), rng.uniform(-0.2, 0.2), rng.uniform(0.25, 0.32)
        disc = (xx - cx) ** 2 + (yy - cy) ** 2 < r**2
        base = np.minimum(body[i], 0.5)  # the body without its own bright spots
        img = np.where(disc, 0.95, base)
        m = disc.astype(np.uint8)
        if i % 2:
            m[((xx - cx) ** 2 + (yy - cy) ** 2 < (r / 2.5) ** 2)] = 2
        images.append(np.clip(np.rint(img * 255), 0, 255).astype(np.uint8))
        masks.append(m)
    names = [f"img{i:08d}.png" for i in range(n)]
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("dataset.json", json.dumps({"labels": [[nm, i % 2] for i, nm in
                                                           enumerate(names)]}))  # fmt: skip
        for name, img, m in zip(names, images, masks, strict=True):
            zf.writestr(name, png_bytes(img))
            zf.writestr(name[:-4] + ".mask.npy", _npy(m))
        doc = {"images": [{"file": nm, "volume_id": 1, "slice_index": i}
                          for i, nm in enumerate(names)],
               "masks": {"labels": {"0": "background", "1": "liver", "2": "tumour"}},
               "pixel_spacing_mm": [0.8, 0.7]}  # fmt: skip
        zf.writestr("medsynth.json", json.dumps(doc))
    return str(path)
