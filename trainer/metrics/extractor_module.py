"""`--extractor-module MODULE[:FUNCTION]`: a feature extractor of one's own, registered with
torch-fidelity before the metrics run. Used by `metrics`, `metrics-plan` and the metrics a
training run computes; below all three, so none imports another for it."""

from __future__ import annotations

import importlib


def load_extractor_module(spec: str | None, name: str | None) -> str | None:
    """Import MODULE[:FUNCTION] so it registers its extractor with torch-fidelity; returns the
    extractor to use: `name` when given, else the name FUNCTION returned (if a string)."""
    if not spec:
        return name
    module_name, _, function = spec.partition(":")
    returned = getattr(importlib.import_module(module_name), function)() if function else None
    return name or (returned if isinstance(returned, str) else None)
