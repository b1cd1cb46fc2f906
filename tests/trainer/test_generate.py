"""`generate`: PNG 8/16-bit and NIfTI in HU, the same image for a seed whatever the batch."""

from __future__ import annotations

import json
import sys

import nibabel as nib
import numpy as np
import pytest
import torch
from PIL import Image

from tests.trainer.helpers import run_trainer
from trainer import snapshot
from trainer.cli import main
from trainer.generate import generate_images, parse_seeds, synthesize
from trainer.hu import hu_mapping
from trainer.networks import Generator

KW = dict(z_dim=16, w_dim=16, img_resolution=16, img_channels=1, channel_base=128, channel_max=16)


def _fake_snapshot(path, c_dim=0, mapping=None) -> str:
    """A minimal snapshot around an untrained generator: all `generate` needs."""
    torch.manual_seed(0)
    G = Generator(c_dim=c_dim, **KW)
    state = {
        "format": snapshot.FORMAT,
        "G_ema": snapshot.module_state(G),
        "G": snapshot.module_state(G),
        "progress": {"cur_nimg": 0, "tick": 0},
        "options": {},
        "dataset": {"hu_mapping": mapping, "bits": 8},
    }
    snapshot.save_atomic(state, str(path))
    return str(path)


@pytest.fixture
def snap(tmp_path):
    return _fake_snapshot(
        tmp_path / "snapshot-000000.pt", mapping={"lo": -160.0, "hi": 240.0, "source": "window"}
    )


def test_seed_lists_and_ranges():
    assert parse_seeds("0-3,10, 7") == [0, 1, 2, 3, 10, 7]
    for bad in ("3-1", "a", "1,,2"):
        with pytest.raises(ValueError):
            parse_seeds(bad)


def test_a_seed_gives_the_same_image_whatever_it_is_batched_with(snap):
    G = snapshot.load_generator(snap)
    alone = generate_images(G, [3], psi=0.7)
    batch = generate_images(G, [0, 1, 2, 3, 4], psi=0.7)
    assert alone.dtype == np.uint8 and batch.shape == (5, 16, 16)
    assert np.array_equal(alone[0], batch[3])
    assert not np.array_equal(batch[0], batch[1])
    wide = generate_images(G, [3], bits=16)
    assert wide.dtype == np.uint16 and wide.max() > 255


def test_png_formats(snap, tmp_path):
    out = tmp_path / "png"
    assert (
        main(
            [
                "generate",
                "--snapshot",
                snap,
                "--seeds",
                "0-2",
                "--outdir",
                str(out),
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    assert sorted(p.name for p in out.iterdir()) == ["seed0000.png", "seed0001.png", "seed0002.png"]
    assert Image.open(out / "seed0001.png").mode == "L"
    assert (
        main(
            [
                "generate",
                "--snapshot",
                snap,
                "--seeds",
                "1",
                "--outdir",
                str(tmp_path / "w"),
                "--format",
                "png16",
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    img16 = Image.open(tmp_path / "w" / "seed0001.png")
    assert img16.mode == "I;16"
    as8 = np.asarray(Image.open(out / "seed0001.png")).astype(float)
    assert np.abs(np.asarray(img16) / 257.0 - as8).max() <= 1.0


def test_nifti_is_float_hounsfield_with_the_dataset_mapping(snap, tmp_path):
    assert (
        main(
            [
                "generate",
                "--snapshot",
                snap,
                "--seeds",
                "5",
                "--outdir",
                str(tmp_path),
                "--format",
                "nifti",
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    nii = nib.load(tmp_path / "seed0005.nii.gz")
    hu = nii.get_fdata(dtype=np.float32)
    assert hu.shape == (16, 16, 1) and nii.get_data_dtype() == np.float32
    assert -160.0 <= hu.min() and hu.max() <= 240.0
    G = snapshot.load_generator(snap)
    x = synthesize(G, [5])[0, 0].clamp(-1, 1)  # [H, W]
    expected = -160 + (x + 1) / 2 * 400
    np.testing.assert_allclose(hu[:, :, 0], expected.numpy().T, atol=1e-3)  # [x, y] = img.T


def test_nifti_without_a_mapping_says_so(tmp_path, capsys):
    snap = _fake_snapshot(tmp_path / "s.pt")
    args = [
        "generate",
        "--snapshot",
        snap,
        "--seeds",
        "0",
        "--outdir",
        str(tmp_path / "o"),
        "--format",
        "nifti",
        "--device",
        "cpu",
    ]
    assert main(args) == 2
    assert "no HU mapping" in capsys.readouterr().err
    assert main([*args, "--hu=-1000,1000"]) == 0


def test_class_is_required_by_conditional_generators(tmp_path, capsys):
    snap = _fake_snapshot(tmp_path / "s.pt", c_dim=2)
    G = snapshot.load_generator(snap)
    a, b = generate_images(G, [0], class_idx=0), generate_images(G, [0], class_idx=1)
    assert not np.array_equal(a, b)
    args = [
        "generate",
        "--snapshot",
        snap,
        "--seeds",
        "0",
        "--outdir",
        str(tmp_path / "o"),
        "--device",
        "cpu",
    ]
    assert main(args) == 2 and "--class" in capsys.readouterr().err
    assert main([*args, "--class", "1"]) == 0


def test_cli_in_a_subprocess_prints_one_json_line(tiny_run, tmp_path):
    from trainer.snapshot import find_latest

    out = run_trainer(
        "generate",
        "--snapshot",
        find_latest(tiny_run),
        "--seeds",
        "0-1",
        "--outdir",
        str(tmp_path),
        "--trunc",
        "0.7",
        "--device",
        "cpu",
    )
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout.strip().splitlines()[-1])["images"] == 2
    bad = run_trainer(
        "generate",
        "--snapshot",
        str(tmp_path / "none.pt"),
        "--seeds",
        "0",
        "--outdir",
        str(tmp_path),
    )
    assert bad.returncode == 2 and "not found" in bad.stderr


def test_info_describes_a_snapshot(tiny_run, capsys):
    from trainer.snapshot import find_latest

    assert main(["info", "--snapshot", find_latest(tiny_run)]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["kimg"] == 0.064 and info["generator"]["img_resolution"] == 16


def test_metrics_says_when_it_is_not_available(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "trainer.metrics", None)
    assert main(["metrics", "--snapshot", "x", "--data", "y"]) == 2
    assert "not available" in capsys.readouterr().err


@pytest.mark.parametrize(
    "prov, bits, expected",
    [
        ({"hu_mapping": {"lo": -1024, "hi": 3071}, "window": "liver"}, 8, (-1024, 3071)),
        ({"window": {"name": "liver", "width": 150, "level": 30}}, 8, (-45, 105)),
        ({"window": "bone"}, 8, (-500, 1300)),
        ({"window": "400,50"}, 8, (-150, 250)),
        ({"window": [400, 50], "hu_range": [-1000, 2000]}, 16, (-1000, 2000)),
        ({"hu_min": -200, "hu_max": 300, "mode": "hu"}, 8, (-200, 300)),
    ],
)
def test_hu_mapping_from_provenance(prov, bits, expected):
    m = hu_mapping(prov, bits)
    assert (m["lo"], m["hi"]) == expected
    assert hu_mapping({}, 8) is None and hu_mapping({"window": "nonsense"}, 8) is None
