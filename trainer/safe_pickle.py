"""Read a published StyleGAN2-ADA `.pkl` as data, without running anything from the file.

Those pickles hold "persistent classes": each module is recorded as its class's Python source
plus its state, and the ordinary `pickle.load` executes that source. This unpickler imports no
module the file names and calls nothing but a short allow-list (tensor and storage rebuilding,
OrderedDict, numpy scalars and dtypes, and a plain-dict stand-in for dnnlib's EasyDict). A
persistent object becomes a `PersistentRecord` of its class name and recorded state; its source
is kept as text, never compiled. Any other global is refused, naming it.
"""

from __future__ import annotations

import collections
import io
import pickle
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch


class RefusedPickle(pickle.UnpicklingError):
    """The file asks for something outside the allow-list (or is not a pickle at all)."""


@dataclass
class PersistentRecord:
    """What a persistent object's pickle records; `module_src` is text that is never run."""

    class_name: str
    state: dict[str, Any]
    version: Any = None
    module_src: str = field(default="", repr=False)


class EasyDict(dict):
    """Stand-in for dnnlib.util.EasyDict (a dict with attribute access): data, nothing else."""


def _persistent(meta: Any) -> PersistentRecord:
    if not isinstance(meta, dict) or meta.get("type") != "class":
        raise RefusedPickle("a persistent object whose record is not a class record")
    state = meta.get("state")
    if not isinstance(state, dict):
        raise RefusedPickle(f"persistent {meta.get('class_name')!r} has no recorded state")
    src = meta.get("module_src")
    return PersistentRecord(
        str(meta.get("class_name")), state, meta.get("version"), src if isinstance(src, str) else ""
    )


def _storage_from_bytes(data: bytes):
    """A tensor storage serialised by torch.save: read with torch's own weights-only loader."""
    if not isinstance(data, bytes | bytearray):
        raise RefusedPickle("a storage that is not bytes")
    return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)


def _numpy_scalar(dtype: Any, data: Any = None):
    if not isinstance(dtype, np.dtype) or dtype.hasobject:
        raise RefusedPickle("a numpy scalar of object dtype")
    return np.frombuffer(data, dtype=dtype, count=1)[0]


def _rebuild_tensor(*args):
    return torch._utils._rebuild_tensor_v2(*args)


def _rebuild_parameter(data, requires_grad, backward_hooks, *rest):
    if backward_hooks:
        raise RefusedPickle("a parameter with backward hooks")
    return data.detach().clone()  # a plain tensor: we copy values, never use the object


ALLOWED: dict[tuple[str, str], Any] = {
    ("torch_utils.persistence", "_reconstruct_persistent_obj"): _persistent,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch.storage", "_load_from_bytes"): _storage_from_bytes,
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("numpy", "dtype"): np.dtype,
    ("numpy.core.multiarray", "scalar"): _numpy_scalar,
    ("numpy._core.multiarray", "scalar"): _numpy_scalar,
    ("dnnlib.util", "EasyDict"): EasyDict,
}


class RestrictedUnpickler(pickle.Unpickler):
    """Resolves globals only through `ALLOWED`; persistent ids are refused."""

    def find_class(self, module: str, name: str) -> Any:
        try:
            return ALLOWED[(module, name)]
        except KeyError:
            raise RefusedPickle(
                f"refused global {module}.{name}: importing it could run code from the file"
            ) from None

    def persistent_load(self, pid: Any) -> Any:
        raise RefusedPickle("refused a persistent id (not a plain pickle)")


def load_pickle(path: str) -> Any:
    """The file's object with persistent modules as PersistentRecords. Raises RefusedPickle."""
    with open(path, "rb") as f:
        try:
            return RestrictedUnpickler(f).load()
        except RefusedPickle:
            raise
        except Exception as e:  # truncated, not a pickle, wrong argument types ...
            raise RefusedPickle(f"{path} is not a readable pickle ({type(e).__name__}: {e})") from e


def module_tensors(record: PersistentRecord, prefix: str = "") -> dict[str, torch.Tensor]:
    """Every parameter and buffer of a recorded module tree, named as in its state_dict."""
    out: dict[str, torch.Tensor] = {}
    state = record.state
    for group in ("_parameters", "_buffers"):
        for name, t in (state.get(group) or {}).items():
            if t is not None:
                if not isinstance(t, torch.Tensor):
                    raise RefusedPickle(f"{prefix}{name} is not a tensor")
                out[prefix + name] = t
    for name, child in (state.get("_modules") or {}).items():
        if child is None:
            continue
        if not isinstance(child, PersistentRecord):
            raise RefusedPickle(f"{prefix}{name} is not a recorded network module")
        out.update(module_tensors(child, f"{prefix}{name}."))
    return out
