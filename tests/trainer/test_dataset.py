"""Dataset zip reading, validation errors, and the resumable sampler."""

from __future__ import annotations

import io
import zipfile

import numpy as np
import pytest
import torch
from PIL import Image

from tests.trainer.zipdata import phantom_images, png_bytes, write_zip
from trainer.dataset import DatasetError, InfiniteSampler, load_dataset


def test_8bit_zip_reads_into_minus_one_to_one(tmp_path):
    imgs = np.zeros([4, 8, 8])
    imgs[1] = 1.0
    imgs[2, 0, 0] = 128 / 255
    ds = load_dataset(write_zip(tmp_path / "d.zip", imgs, labels=[0, 1, 0, 1]), resolution=8)
    x = ds.get_images(torch.arange(4))
    assert x.shape == (4, 1, 8, 8) and x.dtype == torch.float32
    assert x[0].max() == -1 and x[1].min() == 1
    assert x[2, 0, 0, 0].item() == pytest.approx(128 / 255 * 2 - 1, abs=1e-6)
    assert ds.bits == 8 and ds.c_dim == 2 and ds.images.dtype == torch.uint8


def test_16bit_zip_keeps_full_precision(tmp_path):
    imgs = np.zeros([2, 8, 8])
    imgs[0, 0, :3] = [0, 1 / 65535, 1.0]
    ds = load_dataset(write_zip(tmp_path / "d.zip", imgs, bits=16))
    x = ds.get_images(torch.tensor([0]))[0, 0, 0, :3].double()
    assert ds.bits == 16
    assert x.tolist() == pytest.approx([-1.0, -1.0 + 2 / 65535, 1.0], abs=1e-6)


def test_mirror_adds_flipped_copies(tmp_path):
    imgs, labels = phantom_images(3, 8)
    ds = load_dataset(write_zip(tmp_path / "d.zip", imgs, labels), mirror=True, cond=True)
    assert len(ds) == 6
    a, b = ds.get_images(torch.tensor([1, 4]))
    assert torch.equal(a.flip(-1), b)
    lab = ds.get_labels(torch.tensor([1, 4]), ds.c_dim)
    assert torch.equal(lab[0], lab[1]) and lab.shape == (2, 2) and lab.sum() == 2


def test_labels_are_one_hot_in_file_order(tmp_path):
    ds = load_dataset(write_zip(tmp_path / "d.zip", np.zeros([3, 8, 8]), [1, 0, 1]), cond=True)
    assert ds.get_labels(torch.arange(3), 2).tolist() == [[0, 1], [1, 0], [0, 1]]


def test_provenance_is_kept(tmp_path):
    ds = load_dataset(write_zip(tmp_path / "d.zip", np.zeros([1, 8, 8]), provenance={"a": 1}))
    assert ds.provenance == {"a": 1}


def _zip_with(tmp_path, members: dict[str, bytes]) -> str:
    path = tmp_path / "x.zip"
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return str(path)


def _rgb_png() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buf, format="PNG")
    return buf.getvalue()


@pytest.mark.parametrize(
    "members, kwargs, message",
    [
        ({"img0.png": png_bytes(np.zeros([8, 8]))}, {"resolution": 16}, "--res is 16"),
        ({"img0.png": png_bytes(np.zeros([8, 4]))}, {}, "not square"),
        (
            {"a.png": png_bytes(np.zeros([8, 8])), "b.png": png_bytes(np.zeros([16, 16]))},
            {},
            "differs",
        ),
        ({"img0.png": _rgb_png()}, {}, "not grayscale"),
        ({"img0.png": b"not a png"}, {}, "cannot decode"),
        ({"img0.png": png_bytes(np.zeros([6, 6]))}, {}, "power of two"),
        ({"dataset.json": b"{}"}, {}, "no PNG images"),
        ({"img0.png": png_bytes(np.zeros([8, 8]))}, {"cond": True}, "needs labels"),
    ],
)
def test_bad_datasets_are_rejected_with_a_reason(tmp_path, members, kwargs, message):
    with pytest.raises(DatasetError, match=message):
        load_dataset(_zip_with(tmp_path, members), **kwargs)


def test_missing_and_corrupt_zips_are_rejected(tmp_path):
    with pytest.raises(DatasetError, match="not found"):
        load_dataset(str(tmp_path / "nope.zip"))
    bad = tmp_path / "bad.zip"
    bad.write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(DatasetError, match="not a readable zip"):
        load_dataset(str(bad))
    assert issubclass(DatasetError, ValueError)


def test_sampler_covers_every_index_each_epoch_and_resumes_in_place():
    s = InfiniteSampler(10, seed=3)
    first = torch.cat([s.next_batch(5) for _ in range(2)])
    assert sorted(first.tolist()) == list(range(10))
    state = s.state_dict()
    expected = torch.cat([s.next_batch(4) for _ in range(5)])
    s2 = InfiniteSampler(10, seed=99)
    s2.load_state_dict(state)
    assert torch.equal(torch.cat([s2.next_batch(4) for _ in range(5)]), expected)


def test_sampler_ranks_share_one_global_stream():
    ref = InfiniteSampler(12, seed=1)
    ranks = [InfiniteSampler(12, seed=1) for _ in range(3)]
    for _ in range(4):
        full = ref.next_batch(6)
        parts = [r.next_batch(6, rank=i, world_size=3) for i, r in enumerate(ranks)]
        assert torch.equal(torch.cat(parts), full)


def test_sampler_refuses_a_different_dataset_size():
    s = InfiniteSampler(10)
    with pytest.raises(DatasetError, match="same dataset"):
        InfiniteSampler(11).load_state_dict(s.state_dict())
