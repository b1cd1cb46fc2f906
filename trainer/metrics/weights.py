"""The pretrained files torch-fidelity loads, where it looks for them, and a guard against
silent downloads: metrics run offline or fail with a message naming file, folder and hash.

torch-fidelity loads every file through torch.hub's cache, `$TORCH_HOME/hub/checkpoints/`
(default ~/.cache/torch/hub/checkpoints), under the URL's base name:
  weights-inception-2015-12-05-6726825d.pth  Inception-v3 (FID, KID, memorisation features)
  vgg16-397923af.pth                         torchvision VGG16 (precision/recall, PPL's LPIPS)
  weights-vgg16-lpips.pth                    LPIPS v0.1 linear heads (PPL)
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import urllib.error
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from unittest import mock

import torch.hub


@dataclass(frozen=True)
class WeightFile:
    """One file as torch-fidelity names and fetches it; `sha256` is the full digest, or
    empty for a file name this module does not know (then only its presence is checked)."""

    key: str
    url: str
    sha256: str
    size: int  # bytes (approximate for Inception), for messages only
    purpose: str

    @property
    def name(self) -> str:
        return os.path.basename(self.url)

    @property
    def hash_prefix(self) -> str:
        return self.sha256[:8] or "unknown"


def _urls() -> dict[str, str]:
    """The URLs the installed torch-fidelity and torchvision use (so names follow upgrades)."""
    import torchvision
    from torch_fidelity.feature_extractor_inceptionv3 import URL_INCEPTION_V3
    from torch_fidelity.sample_similarity_lpips import URL_VGG16_LPIPS

    vgg = torchvision.models.VGG16_Weights.IMAGENET1K_V1.url
    return {"inception": URL_INCEPTION_V3, "vgg16": vgg, "lpips": URL_VGG16_LPIPS}


_DIGESTS = {  # file name -> (SHA-256, bytes); torch-fidelity 0.3-0.4 and torchvision's VGG16
    "weights-inception-2015-12-05-6726825d.pth": (
        "6726825d0af5f729cebd5821db510b11b1cfad8faad88a03f1befd49fb9129b2", 95_600_000),
    "vgg16-397923af.pth": (
        "397923af8e79cdbb6a7127f12361acd7a2f83e06b05044ddf496e83de57a5bf0", 553_433_881),
    "weights-vgg16-lpips.pth": (  # = LPIPS v0.1 vgg.pth, re-uploaded by torch-fidelity
        "a78928a0af1e5f0fcb1f3b9e8f8c3a2a5a3de244d830ad5c1feddc79b8432868", 7_289),
}  # fmt: skip
_PURPOSE = {
    "inception": "Inception-v3 for FID, KID and memorisation features",
    "vgg16": "VGG16 (ImageNet) for precision/recall and the LPIPS network of PPL",
    "lpips": "LPIPS v0.1 linear layers for PPL",
}
# Which files each metric needs with torch-fidelity's default feature extractors.
METRIC_WEIGHTS = {
    "fid": ("inception",), "kid": ("inception",), "pr": ("vgg16",),
    "ppl": ("vgg16", "lpips"), "memorization": ("inception",), "c2st": (),
}  # fmt: skip
_EXTRACTOR_FILES = {"inception-v3-compat": "inception", "vgg16": "vgg16"}


def weight_files() -> dict[str, WeightFile]:
    files = {}
    for key, url in _urls().items():
        sha, size = _DIGESTS.get(os.path.basename(url), ("", 0))
        files[key] = WeightFile(key, url, sha, size, _PURPOSE[key])
    return files


def checkpoint_dir() -> str:
    """The folder torch.hub (hence torch-fidelity) reads: $TORCH_HOME/hub/checkpoints."""
    return os.path.join(torch.hub.get_dir(), "checkpoints")


class MissingWeightsError(RuntimeError):
    """Pretrained weights a metric needs are absent (or corrupt); the message says what to do."""

    def __init__(self, missing: list[MissingWeight]):
        self.missing = missing
        super().__init__(missing_message(missing))


@dataclass(frozen=True)
class MissingWeight:
    file: WeightFile
    folder: str
    problem: str  # "missing" or "SHA-256 mismatch (found abcd1234)"

    @property
    def path(self) -> str:
        return os.path.join(self.folder, self.file.name)


def _size(n: int) -> str:
    if n <= 0:
        return "size unknown"
    return f"about {n / 1e6:.0f} MB" if n >= 1e6 else f"{n / 1e3:.0f} kB"


def missing_message(missing: list[MissingWeight]) -> str:
    lines = ["pretrained weights needed by the metrics are not on this machine:"]
    for m in missing:
        lines.append(
            f"  - {m.file.name} ({m.problem}; SHA-256 {m.file.hash_prefix}..., "
            f"{_size(m.file.size)}, {m.file.purpose})\n"
            f"    put it in {m.folder}/\n    source: {m.file.url}"
        )
    lines.append(
        "Run `python -m trainer fetch-weights` on a machine with internet access (or download "
        "the URLs above) and copy the files into that folder; TORCH_HOME moves it."
    )
    return "\n".join(lines)


def required_weights(metrics: Iterable[str], feature_extractor: str | None = None) -> list[str]:
    """Keys of the files `metrics` need; a custom feature extractor replaces Inception/VGG16."""
    custom = _EXTRACTOR_FILES.get(feature_extractor or "")
    keys: list[str] = []
    for metric in metrics:
        needed = METRIC_WEIGHTS[metric]
        if feature_extractor is not None and metric in ("fid", "kid", "pr", "memorization"):
            needed = (custom,) if custom else ()  # a registered extractor brings its own
        keys += [k for k in needed if k not in keys]
    return keys


_verified: dict[tuple[str, int, float], str] = {}


def file_sha256(path: str) -> str:
    """SHA-256 of a file, remembered per (path, size, mtime) so repeated checks are free."""
    st = os.stat(path)
    key = (path, st.st_size, st.st_mtime)
    if key not in _verified:
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 22), b""):
                h.update(chunk)
        _verified[key] = h.hexdigest()
    return _verified[key]


def check_weights(
    metrics: Iterable[str], feature_extractor: str | None = None, verify: bool = True
) -> list[MissingWeight]:
    """Files `metrics` need that are absent from (or corrupt in) the torch hub cache."""
    files, folder = weight_files(), checkpoint_dir()
    missing = []
    for key in required_weights(metrics, feature_extractor):
        wf = files[key]
        path = os.path.join(folder, wf.name)
        if not os.path.isfile(path):
            missing.append(MissingWeight(wf, folder, "missing"))
        elif verify and not file_sha256(path).startswith(wf.sha256):
            found = file_sha256(path)[:8]
            missing.append(MissingWeight(wf, folder, f"SHA-256 mismatch (found {found})"))
    return missing


def availability(
    metrics: Iterable[str], feature_extractor: str | None = None, verify: bool = True
) -> dict[str, list[MissingWeight]]:
    """Per metric, the files it needs that are absent or corrupt (empty: it can run)."""
    return {m: check_weights([m], feature_extractor, verify) for m in metrics}


def require_weights(metrics: Iterable[str], feature_extractor: str | None = None) -> None:
    """Raise MissingWeightsError before any model is built, so nothing tries a download."""
    missing = check_weights(metrics, feature_extractor)
    if missing:
        raise MissingWeightsError(missing)


def weights_identity(metrics: Iterable[str], feature_extractor: str | None = None) -> dict:
    """{file name: SHA-256 of the file actually used}, stored with the results."""
    files, folder = weight_files(), checkpoint_dir()
    out = {}
    for key in required_weights(metrics, feature_extractor):
        path = os.path.join(folder, files[key].name)
        out[files[key].name] = file_sha256(path) if os.path.isfile(path) else None
    return out


@contextlib.contextmanager
def no_downloads() -> Iterator[None]:
    """Turn any torch.hub download attempt into MissingWeightsError (torchvision goes through
    torch.hub too), so a metric never fetches from the network behind the user's back."""

    def refuse(url: str, dst: str, *args, **kwargs):
        name = os.path.basename(url)
        known = [w for w in weight_files().values() if w.name == name]
        wf = known[0] if known else WeightFile(name, url, "", 0, "needed by torch-fidelity")
        raise MissingWeightsError([MissingWeight(wf, os.path.dirname(dst), "missing")])

    with mock.patch.object(torch.hub, "download_url_to_file", refuse):
        yield


class FetchError(RuntimeError):
    """A download failed (offline, refused, or wrong hash); the message says which and why."""


def fetch_weights(
    metrics: Iterable[str], progress: Callable[[str], None] = print, show_bar: bool = True
) -> list[str]:
    """Download and verify the files `metrics` need into the torch hub cache; returns paths."""
    files, folder = weight_files(), checkpoint_dir()
    os.makedirs(folder, exist_ok=True)
    paths = []
    for key in required_weights(metrics):
        wf = files[key]
        path = os.path.join(folder, wf.name)
        if os.path.isfile(path) and file_sha256(path).startswith(wf.sha256):
            progress(f"ok      {path} (SHA-256 verified)")
        else:
            progress(f"fetch   {wf.url} ({_size(wf.size)}) -> {path}")
            _download(wf, path, show_bar)
            progress(f"ok      {path} (SHA-256 {wf.hash_prefix}... verified)")
        paths.append(path)
    return paths


def _download(wf: WeightFile, path: str, show_bar: bool) -> None:
    try:
        digest = wf.sha256 or None  # None: a file name this module has no digest for
        torch.hub.download_url_to_file(wf.url, path, hash_prefix=digest, progress=show_bar)
    except (TimeoutError, urllib.error.URLError, ConnectionError) as e:
        reason = getattr(e, "reason", e)
        raise FetchError(
            f"cannot download {wf.name} from {wf.url} ({reason}). This machine looks offline: "
            f"download it elsewhere and copy it to {os.path.dirname(path)}/ "
            f"(SHA-256 must start with {wf.hash_prefix})"
        ) from None
    except RuntimeError as e:  # torch.hub's hash check
        raise FetchError(f"{wf.name}: downloaded file failed verification ({e})") from None
    except OSError as e:
        raise FetchError(f"cannot write {path} ({e.strerror or e})") from None
