"""Tiny stand-ins for the metric tests: a deterministic feature extractor registered with
torch-fidelity (no downloaded weights), smooth random slices, a dataset zip and a snapshot."""

from __future__ import annotations

import io
import json
import zipfile

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch_fidelity import FeatureExtractorBase, register_feature_extractor
from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY

TINY_EXTRACTOR = "medsynth-test-tiny"
TINY_KW = dict(z_dim=32, w_dim=32, img_resolution=16, img_channels=1, channel_base=256,
               channel_max=32)  # fmt: skip


class TinyExtractor(FeatureExtractorBase):
    """A fixed random conv net: 16 features from uint8 [N, 3, H, W] images."""

    def __init__(self, name, features_list, **kwargs):
        super().__init__(name, features_list)
        gen = torch.Generator().manual_seed(1234)
        self.register_buffer("w1", torch.randn([8, 3, 3, 3], generator=gen) / 5)
        self.register_buffer("w2", torch.randn([16, 8, 3, 3], generator=gen) / 9)

    @staticmethod
    def get_provided_features_list():
        return ("feat",)

    @staticmethod
    def get_default_feature_layer_for_metric(metric):
        return "feat"

    @staticmethod
    def can_be_compiled():
        return False

    @staticmethod
    def get_dummy_input_for_compile():
        return None

    def forward(self, x):
        assert x.dtype == torch.uint8 and x.dim() == 4 and x.shape[1] == 3
        x = F.interpolate(x.float() / 127.5 - 1, size=(32, 32), mode="bilinear")
        x = F.leaky_relu(F.conv2d(x, self.w1, stride=2), 0.2)
        x = F.leaky_relu(F.conv2d(x, self.w2, stride=2), 0.2)
        return (x.mean(dim=(2, 3)),)  # [N, 16]


def register_tiny_extractor() -> str:
    if TINY_EXTRACTOR not in FEATURE_EXTRACTORS_REGISTRY:
        register_feature_extractor(TINY_EXTRACTOR, TinyExtractor)
    return TINY_EXTRACTOR


def smooth_images(n: int, res: int = 16, seed: int = 0, blur: int = 2) -> np.ndarray:
    """uint8 [n, 1, res, res] smooth random fields (independent slices-like blobs)."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn([n, 1, res // blur, res // blur], generator=gen)
    x = F.interpolate(x, size=(res, res), mode="bilinear", align_corners=False)
    x = (x - x.amin(dim=(2, 3), keepdim=True)) / (
        x.amax(dim=(2, 3), keepdim=True) - x.amin(dim=(2, 3), keepdim=True) + 1e-6
    )
    return (x * 255).round().to(torch.uint8).numpy()


def write_zip(path, images: np.ndarray, labels: list[int] | None = None, bits: int = 8) -> str:
    """A StyleGAN2-ADA dataset zip of [N, 1, R, R] images (uint8, or uint16 when bits=16)."""
    with zipfile.ZipFile(path, "w") as zf:
        for i, img in enumerate(images):
            buf = io.BytesIO()
            arr = img[0].astype(np.uint16 if bits == 16 else np.uint8)
            Image.fromarray(arr).save(buf, format="PNG")  # mode I;16 or L from the dtype
            zf.writestr(f"img{i:08d}.png", buf.getvalue())
        if labels is not None:
            names = [f"img{i:08d}.png" for i in range(len(images))]
            zf.writestr(
                "dataset.json",
                json.dumps({"labels": [list(p) for p in zip(names, labels, strict=True)]}),
            )
    return str(path)


def tiny_generator(seed: int = 0, **kwargs):
    from trainer.networks import Generator

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return Generator(**(TINY_KW | kwargs)).eval().requires_grad_(False)


def write_snapshot(path, G) -> str:
    """The parts of a snapshot `load_generator` reads (G_ema, progress, dataset facts)."""
    from trainer.snapshot import FORMAT, module_state

    torch.save(
        {
            "format": FORMAT,
            "G_ema": module_state(G),
            "progress": {"cur_nimg": 1000, "tick": 1},
            "dataset": {"bits": 8, "resolution": G.img_resolution},
            "options": {},
        },
        path,
    )
    return str(path)
