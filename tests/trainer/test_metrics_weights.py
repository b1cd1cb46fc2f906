"""Missing pretrained weights: a message naming file, folder and hash, never a download."""

from __future__ import annotations

import os
import urllib.error

import pytest
import torch
import torch.hub

from tests.trainer.metrics_support import smooth_images, tiny_generator, write_snapshot, write_zip
from trainer.metrics import ALL_METRICS, MissingWeightsError, check_weights, compute_metrics, main
from trainer.metrics.ppl import lpips_similarity
from trainer.metrics.weights import FetchError, fetch_weights, no_downloads

FILES = {
    "weights-inception-2015-12-05-6726825d.pth": "6726825d",
    "vgg16-397923af.pth": "397923af",
    "weights-vgg16-lpips.pth": "a78928a0",
}


@pytest.fixture
def empty_torch_home(tmp_path, monkeypatch):
    home = tmp_path / "torch-home"
    monkeypatch.setenv("TORCH_HOME", str(home))
    return home


def test_missing_weights_message_names_file_folder_and_hash(empty_torch_home):
    missing = check_weights(ALL_METRICS)
    assert {m.file.name for m in missing} == set(FILES)
    message = str(MissingWeightsError(missing))
    folder = os.path.join(str(empty_torch_home), "hub", "checkpoints")
    assert f"put it in {folder}/" in message
    for name, prefix in FILES.items():
        assert name in message and f"SHA-256 {prefix}" in message
    assert "fetch-weights" in message


def test_each_metric_needs_only_its_files(empty_torch_home):
    assert [m.file.name for m in check_weights(["fid", "kid"])] == [
        "weights-inception-2015-12-05-6726825d.pth"
    ]
    assert check_weights(["c2st"]) == []
    assert check_weights(["fid", "pr", "memorization"], feature_extractor="my-extractor") == []


def test_corrupt_file_is_reported_as_hash_mismatch(empty_torch_home):
    folder = empty_torch_home / "hub" / "checkpoints"
    folder.mkdir(parents=True)
    (folder / "weights-vgg16-lpips.pth").write_bytes(b"not the weights")
    problems = {m.file.name: m.problem for m in check_weights(["ppl"])}
    assert problems["weights-vgg16-lpips.pth"].startswith("SHA-256 mismatch")
    assert problems["vgg16-397923af.pth"] == "missing"


def test_no_downloads_turns_a_fetch_into_the_message(empty_torch_home):
    url = "https://download.pytorch.org/models/vgg16-397923af.pth"
    with no_downloads(), pytest.raises(MissingWeightsError, match="vgg16-397923af.pth"):
        torch.hub.load_state_dict_from_url(url)


def test_lpips_is_never_downloaded_at_metric_time(empty_torch_home):
    with pytest.raises(MissingWeightsError, match="weights-vgg16-lpips.pth"):
        lpips_similarity(256, torch.device("cpu"))
    assert not (empty_torch_home / "hub" / "checkpoints" / "weights-vgg16-lpips.pth").exists()


def test_compute_metrics_stops_before_work_without_weights(empty_torch_home, tmp_path):
    data = write_zip(tmp_path / "d.zip", smooth_images(8))
    snap = write_snapshot(tmp_path / "s.pt", tiny_generator())
    with pytest.raises(MissingWeightsError, match="6726825d"):
        compute_metrics(snap, data, metrics=("fid",), num=8)


def test_cli_exits_3_with_the_message(empty_torch_home, tmp_path, capsys):
    data = write_zip(tmp_path / "d.zip", smooth_images(8))
    snap = write_snapshot(tmp_path / "s.pt", tiny_generator())
    assert main(["--snapshot", snap, "--data", data, "--metrics", "ppl", "--num", "8"]) == 3
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "weights-vgg16-lpips.pth" in captured.err and "a78928a0" in captured.err


def test_fetch_offline_fails_with_a_clear_message(empty_torch_home, monkeypatch, capsys):
    def offline(*args, **kwargs):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    with pytest.raises(FetchError, match="looks offline.*6726825d"):
        fetch_weights(["fid"], progress=lambda m: None)
    assert main(["fetch-weights", "--metrics", "kid", "--quiet"]) == 3
    assert "Traceback" not in capsys.readouterr().err
