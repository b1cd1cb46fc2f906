"""Training and test slices for a utility run: real zips, the held-out check, synthetic pairs.

A sample set is float images [N, 1, R, R] in [-1, 1], integer label maps [N, R, R] (0
background, 1 liver, 2 tumour) and slice classes [N] (1 = tumour). Synthetic pairs come from a
snapshot trained on image + mask (or, for classification, a conditional one).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from trainer.dataset import ImageDataset, load_dataset


class UtilityError(ValueError):
    """The request cannot give an honest answer (overlap, missing masks or labels)."""


@dataclass
class Samples:
    images: torch.Tensor  # [N, 1, R, R] float in [-1, 1]
    masks: torch.Tensor  # [N, R, R] int64 label ids
    classes: torch.Tensor  # [N] int64: 1 tumour, 0 normal

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def subset(self, idx: np.ndarray | torch.Tensor) -> Samples:
        i = torch.as_tensor(idx, dtype=torch.long)
        return Samples(self.images[i], self.masks[i], self.classes[i])

    @staticmethod
    def concat(parts: list[Samples]) -> Samples:
        return Samples(*(torch.cat([getattr(p, k) for p in parts]) for k in Samples.fields()))

    @staticmethod
    def fields() -> tuple[str, ...]:
        return ("images", "masks", "classes")


def resize(s: Samples, res: int) -> Samples:
    """Images with area averaging (or bilinear upward), label maps with nearest neighbour."""
    if s.images.shape[-1] == res:
        return s
    mode = "area" if s.images.shape[-1] > res else "bilinear"
    img = F.interpolate(s.images, size=(res, res), mode=mode)
    m = F.interpolate(s.masks[:, None].float(), size=(res, res), mode="nearest")[:, 0].long()
    return Samples(img, m, s.classes)


def from_dataset(ds: ImageDataset, task: str) -> Samples:
    """A dataset zip's slices; a clear error when the task needs what the zip lacks."""
    if ds.image_channels != 1:
        raise UtilityError("utility runs need grayscale images (one image channel)")
    idx = torch.arange(ds.num_images)
    x = ds.get_images(idx)[:, :1]  # mirror is off: indices are the images themselves
    if ds.masks is None:
        if task == "segmentation":
            raise UtilityError("segmentation needs masks: freeze the dataset with masks")
        masks = torch.zeros(x.shape[0], *x.shape[2:], dtype=torch.long)
    else:
        masks = ds.masks[:, 0].long()
    if ds.labels is not None:
        classes = torch.as_tensor(ds.labels).long()
    elif ds.masks is not None:
        classes = (masks == 2).flatten(1).any(1).long()
    else:
        raise UtilityError("classification needs tumour/normal labels in dataset.json")
    return Samples(x, masks, classes)


def load_samples(path: str, task: str, res: int | None) -> tuple[Samples, ImageDataset]:
    ds = load_dataset(path)
    s = from_dataset(ds, task)
    return (resize(s, res) if res else s), ds


def source_volumes(provenance: dict) -> dict[str, str]:
    """{source key: volume id} of every image's source volume (content hash, else id)."""
    out = {}
    for im in provenance.get("images") or []:
        if not isinstance(im, dict):
            continue
        key = im.get("source_sha256") or (
            f"volume:{im['volume_id']}" if im.get("volume_id") is not None else None
        )
        if key:
            out[str(key)] = str(im.get("volume_id", "?"))
    return out


def slice_patients(provenance: dict, n: int) -> list[str]:
    """The source volume (the patient: the unit of inference) of each of the `n` images, in
    dataset order, as its volume id."""
    images = provenance.get("images") or []
    ids = [str(im.get("volume_id", im.get("source_sha256", "?"))) if isinstance(im, dict)
           else "?" for im in images]  # fmt: skip
    if len(ids) != n or "?" in ids:
        raise UtilityError("the test zip's medsynth.json does not name the source volume of "
                           "every image: export it again from MedSynth")  # fmt: skip
    return ids


def check_held_out(train: dict, test: dict, generator: dict | None = None) -> list[str]:
    """Refuse a test set that shares a source volume (a patient) with the training set or
    with the generator's training data; returns the test volume ids."""
    test_vols = source_volumes(test)
    if not test_vols:
        raise UtilityError("the test zip has no medsynth.json provenance: cannot verify that "
                           "its volumes are held out; export it from MedSynth")  # fmt: skip
    for what, prov in (("training set", train), ("snapshot's training data", generator)):
        if prov is None:
            continue
        vols = source_volumes(prov)
        if not vols:
            raise UtilityError(f"the {what} has no medsynth.json provenance: cannot verify "
                               "that the test volumes are held out")  # fmt: skip
        shared = sorted({test_vols[k] for k in set(vols) & set(test_vols)})
        if shared:
            raise UtilityError(
                f"the test set shares {len(shared)} source volume(s) with the {what} "
                f"(volume id {', '.join(shared[:10])}): a test set must come from other "
                "patients; build it from volumes that were never used for training"
            )
    return sorted(set(test_vols.values()))


def label_map(channels: torch.Tensor) -> torch.Tensor:
    """Generated label channels [N, L, R, R] -> label ids [N, R, R] (as `generate` writes)."""
    best = channels.argmax(dim=1) + 1
    return torch.where(channels.amax(dim=1) > 0, best, torch.zeros_like(best))


@torch.no_grad()
def synthetic(G: torch.nn.Module, n: int, task: str, class_freq: float, seed: int,
              device, batch: int = 32) -> Samples:  # fmt: skip
    """`n` generated pairs for seeds seed.. seed+n-1 (classes drawn at the real tumour rate)."""
    from trainer.generate_io import seed_latents

    label_ch = getattr(G, "label_channels", 0)
    if task == "segmentation" and label_ch == 0:
        raise UtilityError("this snapshot makes images without masks: train it on a dataset "
                           "frozen with masks to use synthetic data for segmentation")  # fmt: skip
    if task == "classification" and G.c_dim == 0 and label_ch == 0:
        raise UtilityError("this snapshot is neither conditional nor paired with masks, so its "
                           "images have no tumour/normal label")  # fmt: skip
    rng = np.random.default_rng([seed, 7])
    want = torch.as_tensor(rng.random(n) < class_freq).long()
    imgs, masks = [], []
    for i in range(0, n, batch):
        z = seed_latents(list(range(seed + i, seed + min(i + batch, n))), G.z_dim).to(device)
        c = F.one_hot(want[i : i + len(z)], G.c_dim).float().to(device) if G.c_dim else None
        out = G(z, c, noise_mode="const").float().cpu()
        ch = out.shape[1] - label_ch
        imgs.append(out[:, :1].clamp(-1, 1))
        masks.append(label_map(out[:, ch:]) if label_ch else torch.zeros_like(out[:, 0]).long())
    m = torch.cat(masks)
    classes = want if G.c_dim else (m == 2).flatten(1).any(1).long()
    return Samples(torch.cat(imgs), m, classes)
