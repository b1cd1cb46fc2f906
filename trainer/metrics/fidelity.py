"""FID, KID and precision/recall through torch_fidelity.calculate_metrics, the relative FD of
small datasets, and feature extraction with the same extractors (for memorisation).

Every call is wrapped in `no_downloads()` after the weights were checked, so torch-fidelity
never reaches for the network. Real-image features are cached by torch-fidelity under a name
made of the pixels' hash, so later snapshots of the same dataset skip that pass.
"""

from __future__ import annotations

import glob
import os

import numpy as np
import torch
import torch_fidelity
from torch.utils.data import Dataset

from trainer.metrics.weights import no_downloads

DEFAULT_EXTRACTOR = {"fid": "inception-v3-compat", "kid": "inception-v3-compat", "pr": "vgg16"}
_TF_NAME = {"fid": "fid", "kid": "kid", "pr": "prc"}


def default_cache_root() -> str:
    """torch-fidelity's own default: $TORCH_HOME/fidelity_cache."""
    return os.path.join(os.path.dirname(torch.hub.get_dir()), "fidelity_cache")


def extractor_for(metric: str, feature_extractor: str | None) -> tuple[str, str]:
    """(extractor name, feature layer) torch-fidelity uses for `metric` ('fid', 'kid', 'pr')."""
    from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY

    name = feature_extractor or DEFAULT_EXTRACTOR[metric]
    if name not in FEATURE_EXTRACTORS_REGISTRY:
        raise ValueError(f"feature extractor {name!r} is not registered with torch-fidelity")
    layer = FEATURE_EXTRACTORS_REGISTRY[name].get_default_feature_layer_for_metric(_TF_NAME[metric])
    return name, layer


def tf_options(device: torch.device, batch: int, seed: int, cache_root: str | None) -> dict:
    """calculate_metrics options shared by every call: quiet, no worker processes, seeded."""
    return dict(
        cuda=device.type == "cuda", batch_size=batch, verbose=False, save_cpu_ram=True,
        rng_seed=seed, cache=cache_root is not None, cache_root=cache_root,
    )  # fmt: skip


def fidelity_metrics(
    generated: Dataset,
    real: Dataset,
    metrics: set[str],
    *,
    device: torch.device,
    batch: int = 32,
    seed: int = 0,
    feature_extractor: str | None = None,
    kid_subsets: int = 100,
    kid_subset_size: int = 1000,
    pr_k: int = 3,
    cache_root: str | None = None,
    real_cache_name: str | None = None,
    generated_cache_name: str | None = None,
) -> dict:
    """{'fid': {...}, 'kid': {...}, 'pr': {...}} for those of fid/kid/pr in `metrics`
    (input1 = generated, input2 = real, as torch-fidelity's precision/recall convention)."""
    wanted = metrics & {"fid", "kid", "pr"}
    if not wanted:
        return {}
    subset = min(kid_subset_size, len(generated), len(real))
    with no_downloads():
        raw = torch_fidelity.calculate_metrics(
            input1=generated, input2=real, input1_cache_name=generated_cache_name,
            input2_cache_name=real_cache_name, fid="fid" in wanted, kid="kid" in wanted,
            prc="pr" in wanted, feature_extractor=feature_extractor, kid_subsets=kid_subsets,
            kid_subset_size=subset, prc_neighborhood=pr_k,
            **tf_options(device, batch, seed, cache_root),
        )  # fmt: skip
    out: dict = {}
    if "fid" in wanted:
        out["fid"] = {"value": raw[torch_fidelity.KEY_METRIC_FID]}
    if "kid" in wanted:
        out["kid"] = {
            "mean": raw[torch_fidelity.KEY_METRIC_KID_MEAN],
            "std": raw[torch_fidelity.KEY_METRIC_KID_STD],
            "subset_size": subset, "subsets": kid_subsets,
        }  # fmt: skip
    if "pr" in wanted:
        out["pr"] = {
            "precision": raw[torch_fidelity.KEY_METRIC_PRECISION],
            "recall": raw[torch_fidelity.KEY_METRIC_RECALL],
            "f_score": raw[torch_fidelity.KEY_METRIC_F_SCORE], "k": pr_k,
        }  # fmt: skip
    for metric, entry in out.items():
        entry["feature_extractor"], entry["feature_layer"] = extractor_for(
            metric, feature_extractor
        )
    return out


def real_halves_fid(
    real: Dataset,
    *,
    device: torch.device,
    batch: int = 32,
    seed: int = 0,
    feature_extractor: str | None = None,
    cache_root: str | None = None,
    real_cache_name: str | None = None,
) -> float | None:
    """FID between two random halves of the real set: the floor a perfect generator would
    reach on this few images, the denominator of the relative FD (Woodland et al. 2024)."""
    n = len(real)
    if n < 4:
        return None
    perm = np.random.default_rng([seed, 2]).permutation(n)
    halves = [_subset(real, perm[: n // 2]), _subset(real, perm[n // 2 : 2 * (n // 2)])]
    names = [None, None]
    if real_cache_name:
        names = [f"{real_cache_name}-half{k}-of{n}-seed{seed}" for k in (0, 1)]
    with no_downloads():
        raw = torch_fidelity.calculate_metrics(
            input1=halves[0], input2=halves[1], input1_cache_name=names[0],
            input2_cache_name=names[1], fid=True, feature_extractor=feature_extractor,
            **tf_options(device, batch, seed, cache_root),
        )  # fmt: skip
    return float(raw[torch_fidelity.KEY_METRIC_FID])


def _subset(dataset: Dataset, indices: np.ndarray) -> Dataset:
    return torch.utils.data.Subset(dataset, indices.tolist())


def relative_fd(fid: float, fid_halves: float | None) -> float | None:
    """FID / FID(real half, real half); ~1 means as close as the reals are to themselves."""
    if fid_halves is None or fid_halves <= 0:
        return None
    return fid / fid_halves


def extract_features(
    dataset: Dataset,
    *,
    name: str,
    layer: str,
    device: torch.device,
    batch: int = 32,
    cache_root: str | None = None,
    cache_name: str | None = None,
) -> torch.Tensor:
    """`[N, D]` float features with torch-fidelity's own extractor and loop; reuses features
    that calculate_metrics cached under `cache_name` instead of a second pass."""
    from torch_fidelity.utils import (
        create_feature_extractor,
        extract_featuresdict_from_input_id_cached,
    )

    opts = tf_options(device, batch, 0, cache_root)
    with no_downloads():
        fe = create_feature_extractor(name, [layer], **opts)
        feats = extract_featuresdict_from_input_id_cached(
            1, fe, input1=dataset, input1_cache_name=cache_name, **opts
        )
    return feats[layer].float()


def drop_cached(cache_root: str | None, cache_name: str | None) -> None:
    """Remove a run's own entries (its unique name prefix) from torch-fidelity's cache."""
    if not cache_root or not cache_name:
        return
    for path in glob.glob(os.path.join(glob.escape(cache_root), glob.escape(cache_name) + "-*")):
        os.remove(path)
