"""The pixel-to-Hounsfield mapping of a dataset, read from its medsynth.json provenance.

Accepted keys (first match wins):
  "hu_mapping": {"lo": HU at pixel 0, "hi": HU at the largest pixel value}
  16-bit ("bit_depth": 16 or "mode": "hu", or 16-bit PNGs): "hu_range" [lo, hi] or
      {"min", "max"} or top-level "hu_min"/"hu_max"
  8-bit: "window" {"width", "level"}, [width, level], "W,L" or a preset name
      (liver, abdomen, bone, lung, mediastinum); pixel 0 is level - width/2.
The mapping is linear: HU = lo + (hi - lo) * value / max_value.
"""

from __future__ import annotations

from typing import Any

WINDOW_PRESETS = {
    "liver": (150.0, 30.0),
    "abdomen": (400.0, 50.0),
    "bone": (1800.0, 400.0),
    "lung": (1500.0, -600.0),
    "mediastinum": (350.0, 50.0),
}


def _pair(v: Any, keys: tuple[str, str]) -> tuple[float, float] | None:
    try:
        if isinstance(v, dict) and all(k in v for k in keys):
            return float(v[keys[0]]), float(v[keys[1]])
        if isinstance(v, list | tuple) and len(v) == 2:
            return float(v[0]), float(v[1])
        if isinstance(v, str) and "," in v:
            a, b = v.split(",", 1)
            return float(a), float(b)
    except (TypeError, ValueError):
        return None
    return None


def _window(prov: dict) -> tuple[float, float] | None:
    w = prov.get("window")
    if isinstance(w, str) and w.strip().lower() in WINDOW_PRESETS:
        return WINDOW_PRESETS[w.strip().lower()]
    if isinstance(w, dict) and "name" in w and "width" not in w:
        return WINDOW_PRESETS.get(str(w["name"]).lower())
    return _pair(w, ("width", "level"))


def _hu_range(prov: dict) -> tuple[float, float] | None:
    r = _pair(prov.get("hu_range"), ("min", "max"))
    if r is None and "hu_min" in prov and "hu_max" in prov:
        r = _pair([prov["hu_min"], prov["hu_max"]], ("min", "max"))
    return r


def hu_mapping(prov: dict | None, bits: int) -> dict[str, Any] | None:
    """{"lo", "hi", "source"} for NIfTI export, or None when the provenance does not say."""
    if not prov:
        return None
    explicit = _pair(prov.get("hu_mapping"), ("lo", "hi"))
    if explicit:
        return {"lo": explicit[0], "hi": explicit[1], "source": "hu_mapping"}
    hu_mode = bits == 16 or prov.get("bit_depth") == 16 or str(prov.get("mode", "")) == "hu"
    r, w = _hu_range(prov), _window(prov)
    if hu_mode and r:
        return {"lo": r[0], "hi": r[1], "source": "hu_range"}
    if w:
        width, level = w
        return {"lo": level - width / 2, "hi": level + width / 2, "source": "window"}
    if r:
        return {"lo": r[0], "hi": r[1], "source": "hu_range"}
    return None
