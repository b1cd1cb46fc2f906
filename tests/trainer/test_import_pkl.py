"""import-pkl against checkpoints written by the reference (shared/fixtures/nvlabs): outputs to
~1e-5, exact RGB -> gray, nothing from the file ever runs, and the result fine-tunes."""

from __future__ import annotations

import os
import pickle
import sys
import types

import numpy as np
import pytest
import torch

from tests.trainer.helpers import REPO
from trainer.cli import main
from trainer.safe_pickle import PersistentRecord, load_pickle
from trainer.snapshot import build_network, load_snapshot

FIXTURES = os.path.join(os.path.dirname(REPO), "shared", "fixtures", "nvlabs")
NAMES = ["gray32", "rgb32-cond2", "gray64-fp16"]
LUMA = np.array([0.299, 0.587, 0.114], np.float32)

pytestmark = pytest.mark.skipif(not os.path.isdir(FIXTURES), reason="no reference fixtures")


def fixture(name):
    return os.path.join(FIXTURES, name + ".pkl"), np.load(
        os.path.join(FIXTURES, name + ".expected.npz")
    )


@pytest.fixture(scope="module")
def imported(tmp_path_factory):
    out = tmp_path_factory.mktemp("imported")
    paths = {}
    for name, channels in [(n, None) for n in NAMES] + [("rgb32-cond2", 1)]:
        path = str(out / f"{name}-{channels}.pt")
        args = ["import-pkl", fixture(name)[0], "--out", path]
        assert main(args + (["--channels", str(channels)] if channels else [])) == 0
        paths[name, channels] = path
    return paths


def nets(path):
    state = load_snapshot(path)
    return build_network(state["G_ema"], "G"), build_network(state["D"], "D"), state


@pytest.mark.parametrize("name", NAMES)
def test_imported_networks_reproduce_the_reference_outputs(imported, name, one_thread):
    G, D, state = nets(imported[name, None])
    _, e = fixture(name)
    z, c = torch.from_numpy(e["z"]), torch.from_numpy(e["c"]) if e["c"].shape[1] else None
    with torch.no_grad():
        np.testing.assert_allclose(G.mapping(z, c).numpy(), e["ws"], atol=1e-5, rtol=0)
        np.testing.assert_allclose(G(z, c, noise_mode="const").numpy(), e["img"], atol=1e-5, rtol=0)
        img07 = G(z, c, truncation_psi=0.7, noise_mode="const").numpy()
        np.testing.assert_allclose(img07, e["img_psi07"], atol=1e-5, rtol=0)
        logits = D(torch.from_numpy(e["img"]), c).numpy()
        np.testing.assert_allclose(logits, e["d_logits"], atol=1e-5, rtol=0)
    assert state["augment"]["p"] == pytest.approx(float(e["augment_p"]))


def test_gray_import_of_rgb_makes_the_luma_and_scores_it_as_rgb(imported, one_thread):
    G, D, _ = nets(imported["rgb32-cond2", 1])
    _, Drgb, _ = nets(imported["rgb32-cond2", None])
    _, e = fixture("rgb32-cond2")
    z, c = torch.from_numpy(e["z"]), torch.from_numpy(e["c"])
    luma = np.tensordot(LUMA, e["img"], axes=([0], [1]))[:, None]
    with torch.no_grad():
        img = G(z, c, noise_mode="const")
        np.testing.assert_allclose(img.numpy(), luma, atol=1e-5, rtol=0)
        torch.testing.assert_close(D(img, c), Drgb(img.expand(-1, 3, -1, -1), c))
    assert G.img_channels == D.img_channels == 1


def test_our_geometry_filter_is_the_reference_pipes_symlet6():
    from trainer.augment_geometry import sym6_filter

    pipe = load_pickle(fixture("gray32")[0])["augment_pipe"]
    ref = pipe.state["_buffers"]["Hz_geom"]
    torch.testing.assert_close(sym6_filter(), ref.float(), atol=1e-7, rtol=0)


def _install_fake_persistence(monkeypatch):
    """A stand-in for the reference's torch_utils.persistence: as the real one, it executes
    the recorded source when unpickled (used only to prove the test pickle is dangerous)."""
    mod = types.ModuleType("torch_utils.persistence")

    def _reconstruct_persistent_obj(meta):
        exec(compile(meta["module_src"], "<pickled source>", "exec"), {})
        return meta["class_name"]

    _reconstruct_persistent_obj.__module__ = mod.__name__
    _reconstruct_persistent_obj.__qualname__ = "_reconstruct_persistent_obj"
    mod._reconstruct_persistent_obj = _reconstruct_persistent_obj
    monkeypatch.setitem(sys.modules, "torch_utils", types.ModuleType("torch_utils"))
    monkeypatch.setitem(sys.modules, "torch_utils.persistence", mod)
    return mod


class _Persistent:
    def __init__(self, fn, meta):
        self.fn, self.meta = fn, meta

    def __reduce__(self):
        return self.fn, (self.meta,)


def test_a_pickle_whose_class_source_writes_a_file_is_refused_and_nothing_runs(
    tmp_path, monkeypatch, capsys
):
    marker = tmp_path / "PWNED"
    src = f"open({str(marker)!r}, 'w').write('ran')\nclass Generator:\n    pass\n"
    fake = _install_fake_persistence(monkeypatch)
    meta = {"type": "class", "version": 6, "module_src": src, "class_name": "Generator",
            "state": {"_init_kwargs": {"z_dim": 4}}}  # fmt: skip
    record = _Persistent(fake._reconstruct_persistent_obj, meta)
    evil = tmp_path / "evil.pkl"
    evil.write_bytes(pickle.dumps({"G": record, "D": record, "G_ema": record}))
    pickle.loads(evil.read_bytes())  # the ordinary way runs the source ...
    assert marker.read_text() == "ran"
    marker.unlink()
    monkeypatch.delitem(sys.modules, "torch_utils.persistence")
    monkeypatch.delitem(sys.modules, "torch_utils")
    out = tmp_path / "evil.pt"
    assert main(["import-pkl", str(evil), "--out", str(out)]) == 2  # ... ours refuses it
    assert "Generator" in capsys.readouterr().err
    assert not marker.exists() and not out.exists()
    assert isinstance(load_pickle(str(evil))["G"], PersistentRecord)  # source kept as text


class _Exec:
    def __init__(self, code):
        self.code = code

    def __reduce__(self):
        return exec, (self.code,)


def test_a_pickle_naming_any_other_global_is_refused_by_name(tmp_path, capsys):
    marker = tmp_path / "PWNED"
    evil = tmp_path / "evil.pkl"
    evil.write_bytes(pickle.dumps({"G": _Exec(f"open({str(marker)!r}, 'w')")}))
    assert main(["import-pkl", str(evil), "--out", str(tmp_path / "x.pt")]) == 2
    assert "refused global builtins.exec" in capsys.readouterr().err
    assert not marker.exists() and not (tmp_path / "x.pt").exists()


def test_generate_npy_from_latents_is_the_raw_reference_output(imported, tmp_path, one_thread):
    _, e = fixture("rgb32-cond2")
    np.save(tmp_path / "z.npy", e["z"])
    np.save(tmp_path / "c.npy", e["c"])
    for mode in ("const", "none"):
        out = tmp_path / mode
        args = ["generate", "--snapshot", imported["rgb32-cond2", None], "--z",
                str(tmp_path / "z.npy"), "--c", str(tmp_path / "c.npy"), "--format", "npy",
                "--noise-mode", mode, "--outdir", str(out), "--device", "cpu"]  # fmt: skip
        assert main(args) == 0
        imgs = np.load(out / "images.npy")
        assert imgs.dtype == np.float32 and imgs.shape == e["img"].shape
        close = np.allclose(imgs, e["img"], atol=1e-5, rtol=0)
        assert close == (mode == "const")


def test_generate_rejects_latents_of_the_wrong_shape(imported, tmp_path, capsys):
    np.save(tmp_path / "z.npy", np.zeros([2, 5], np.float32))
    args = ["generate", "--snapshot", imported["gray32", None], "--z", str(tmp_path / "z.npy"),
            "--outdir", str(tmp_path / "o"), "--device", "cpu"]  # fmt: skip
    assert main(args) == 2
    assert "need float [N, 64]" in capsys.readouterr().err


def test_an_imported_checkpoint_fine_tunes_and_cannot_be_resumed_as_a_run(imported, tmp_path):
    from tests.trainer.helpers import run_trainer
    from tests.trainer.zipdata import phantom_zip

    data = phantom_zip(tmp_path / "d.zip", n=8, res=32)
    run = tmp_path / "run"
    args = ["train", "--data", data, "--outdir", str(run), "--kimg", "0.004", "--tick", "0.004",
            "--batch", "4", "--device", "cpu", "--resume", imported["gray32", None]]  # fmt: skip
    done = run_trainer(*args)
    assert done.returncode == 0, done.stderr
    log = (run / "log.txt").read_text()
    assert "fine-tuning from the snapshot" in log
    (written,) = run.glob("snapshot-*.pt")
    state = load_snapshot(str(written))
    assert state["G"]["init_kwargs"]["channel_max"] == 64  # the architecture came along
    assert state["options"]["network"]["z_dim"] == 64
    written.write_bytes(open(imported["gray32", None], "rb").read())  # as if copied in
    again = run_trainer(*args[:-2], "--resume", "latest")
    assert again.returncode == 2 and "imported checkpoint" in again.stderr
