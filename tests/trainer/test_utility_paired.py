"""Paired image + mask: the dataset's mask channels, training on them, and generated pairs."""

from __future__ import annotations

import glob
import os

import nibabel as nib
import numpy as np
import torch
from PIL import Image

from tests.trainer.helpers import run_trainer
from tests.trainer.utility_phantoms import disc_zip
from trainer.dataset import load_dataset
from trainer.generate import label_map

NET = ["--cbase", "1024", "--cmax", "64", "--zdim", "64", "--batch", "8", "--device", "cpu",
       "--aug", "noaug", "--tick", "0.25", "--snap", "100", "--seed", "1", "--mirror"]  # fmt: skip


def test_masks_become_channels_that_mirror_with_the_image(tmp_path):
    ds = load_dataset(disc_zip(tmp_path / "d.zip", n=4, res=16), mirror=True)
    assert (ds.image_channels, ds.label_channels, ds.num_channels) == (1, 2, 3)
    x = ds.get_images(torch.tensor([1, 5]))  # image 1 and its mirrored copy
    assert x.shape == (2, 3, 16, 16) and set(x[:, 1:].unique().tolist()) == {-1.0, 1.0}
    assert torch.equal(x[1], x[0].flip(-1))
    liver, tumour, bright = x[0, 1] > 0, x[0, 2] > 0, x[0, 0] > 0.8
    assert torch.equal(liver | tumour, bright)  # the labels are the bright disc, pixel for pixel
    assert tumour.any() and not (liver & tumour).any()  # one channel per label, one-hot


def test_label_map_decodes_the_strongest_present_channel():
    ch = torch.tensor([[[[-1.0, 0.5, 0.9]]], [[[-1.0, 0.2, 0.95]]]]).permute(1, 0, 2, 3)
    assert label_map(ch).tolist() == [[[0, 1, 2]]]


def _on_bright(images: np.ndarray, masks: np.ndarray) -> tuple[float, int]:
    """Mean share of each non-empty mask's pixels that lie on its image's brightest 15 %
    (chance: 0.15), and how many masks were non-empty."""
    shares = []
    for img, m in zip(images.astype(float), masks, strict=True):
        if (m > 0).any():
            bright = img >= np.quantile(img, 0.85)
            shares.append((bright & (m > 0)).sum() / (m > 0).sum())
    return float(np.mean(shares)) if shares else 0.0, len(shares)


def test_a_trained_paired_model_generates_aligned_masks(tmp_path):
    data = disc_zip(tmp_path / "discs.zip", n=64, res=16)
    run = tmp_path / "run"
    out = run_trainer("train", "--data", data, "--outdir", str(run), "--kimg", "3", *NET,
                      timeout=600)  # fmt: skip
    assert out.returncode == 0, out.stderr
    snap = sorted(glob.glob(str(run / "snapshot-*.pt")))[-1]
    gen = tmp_path / "gen"
    out = run_trainer("generate", "--snapshot", snap, "--seeds", "0-31", "--outdir", str(gen),
                      "--device", "cpu")  # fmt: skip
    assert out.returncode == 0, out.stderr
    images = np.stack([np.asarray(Image.open(gen / f"seed{s:04d}.png")) for s in range(32)])
    masks = np.stack([np.asarray(Image.open(gen / f"seed{s:04d}.mask.png")) for s in range(32)])
    assert masks.shape == images.shape and set(np.unique(masks)) <= {0, 1, 2}
    share, found = _on_bright(images, masks)
    assert found >= 16 and share > 0.6, (share, found)  # the disc, far above chance (0.15)

    out = run_trainer("generate", "--snapshot", snap, "--seeds", "3", "--outdir", str(gen),
                      "--format", "nifti", "--hu=-100,200", "--device", "cpu")  # fmt: skip
    assert out.returncode == 0, out.stderr
    image, mask = nib.load(gen / "seed0003.nii.gz"), nib.load(gen / "seed0003.mask.nii.gz")
    assert np.allclose(np.diag(image.affine)[:3], [0.7, 0.8, 1.0])  # column, row mm, 1 slice
    assert np.array_equal(image.affine, mask.affine)
    assert mask.get_fdata().shape == image.get_fdata().shape == (16, 16, 1)
    assert np.array_equal(np.asarray(mask.dataobj)[:, :, 0].T, masks[3])
    assert os.path.getsize(gen / "seed0003.mask.nii.gz") > 0


def test_conditioning_still_works_on_image_and_mask(tmp_path):
    from tests.trainer.helpers import TINY

    data = disc_zip(tmp_path / "discs.zip", n=8, res=16)
    run = tmp_path / "run"
    out = run_trainer("train", "--data", data, "--outdir", str(run), "--kimg", "0", "--cond",
                      *TINY, "--aug", "ada")  # fmt: skip
    assert out.returncode == 0, out.stderr
    gen = tmp_path / "gen"
    out = run_trainer("generate", "--snapshot", str(run / "snapshot-000000.pt"), "--seeds", "0-1",
                      "--class", "1", "--outdir", str(gen), "--device", "cpu")  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert sorted(os.listdir(gen)) == ["seed0000.mask.png", "seed0000.png", "seed0001.mask.png",
                                       "seed0001.png"]  # fmt: skip
