"""`--extractor-module`: a feature extractor of one's own (e.g. a radiology network), registered
before the metrics run, so FID/KID/PR/memorisation need no downloaded weights."""

from __future__ import annotations

import json

from tests.trainer.metrics_support import (
    TINY_EXTRACTOR,
    smooth_images,
    tiny_generator,
    write_snapshot,
    write_zip,
)
from trainer.metrics import main

MODULE = "tests.trainer.metrics_support:register_tiny_extractor"


def _files(tmp_path) -> list[str]:
    data = write_zip(tmp_path / "d.zip", smooth_images(12, seed=1))
    snap = write_snapshot(tmp_path / "s.pt", tiny_generator())
    return ["--snapshot", snap, "--data", data, "--num", "12", "--device", "cpu", "--no-estimate",
            "--cache-root", str(tmp_path / "cache"), "--kid-subsets", "3"]  # fmt: skip


def test_the_function_registers_and_names_the_extractor(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "no-weights-here"))
    code = main([*_files(tmp_path), "--metrics", "fid,kid", "--extractor-module", MODULE])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    result = json.loads(captured.out)
    assert result["environment"]["feature_extractors"]["fid"]["name"] == TINY_EXTRACTOR
    assert result["options"]["feature_extractor"] == TINY_EXTRACTOR
    assert result["metrics"]["fid"]["value"] > 0


def test_a_module_that_does_not_import_is_a_usage_error(tmp_path, capsys):
    code = main([*_files(tmp_path), "--metrics", "fid", "--extractor-module", "no_such_mod:f"])
    assert code == 2 and "--extractor-module no_such_mod:f" in capsys.readouterr().err
    code = main([*_files(tmp_path), "--metrics", "fid", "--extractor-module",
                 "tests.trainer.metrics_support:no_such_function"])  # fmt: skip
    assert code == 2 and "no_such_function" in capsys.readouterr().err
