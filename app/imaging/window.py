"""CT display windows (width, level in HU) and the HU → 8-bit mapping."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from app.errors import InvalidInput


@dataclass(frozen=True)
class Window:
    name: str  # a preset name, or "W,L" for a custom window
    width: float
    level: float

    @property
    def low(self) -> float:
        return self.level - self.width / 2

    @property
    def high(self) -> float:
        return self.level + self.width / 2


PRESETS: dict[str, Window] = {
    w.name: w
    for w in (
        Window("liver", 150, 30),
        Window("abdomen", 400, 50),
        Window("bone", 1800, 400),
        Window("lung", 1500, -600),
        Window("mediastinum", 350, 50),
    )
}
_PAIR = re.compile(r"^\s*([-+]?\d+(?:\.\d+)?)\s*,\s*([-+]?\d+(?:\.\d+)?)\s*$")


def _help() -> str:
    presets = ", ".join(f"{w.name} ({w.width:g},{w.level:g})" for w in PRESETS.values())
    return f"use a preset ({presets}) or 'W,L' in HU with W > 0, e.g. '400,40'"


def parse_window(spec: str | None) -> Window:
    """A preset name (case-insensitive) or 'W,L'; anything else is InvalidInput (422)."""
    text = (spec or "").strip()
    if text.lower() in PRESETS:
        return PRESETS[text.lower()]
    match = _PAIR.match(text)
    if not match:
        raise InvalidInput(f"bad window {text!r}: {_help()}")
    width, level = float(match.group(1)), float(match.group(2))
    if not (width > 0 and math.isfinite(width) and math.isfinite(level)) or width > 100_000:
        raise InvalidInput(f"bad window {text!r}: width must be between 0 and 100000; {_help()}")
    return Window(f"{width:g},{level:g}", width, level)


@lru_cache(maxsize=64)
def _lut(window: Window) -> np.ndarray:
    """uint8 value for every int16 HU, indexed by the HU's bit pattern as uint16."""
    hu = np.arange(65536, dtype=np.uint16).view(np.int16).astype(np.float32)
    scaled = (hu - np.float32(window.low)) * np.float32(255.0 / window.width)
    lut = np.clip(np.rint(scaled), 0, 255).astype(np.uint8)
    lut.flags.writeable = False
    return lut


def to_uint8(hu: np.ndarray, window: Window) -> np.ndarray:
    """Map HU linearly so low→0 and high→255, clipped; int16 input goes through a table."""
    if hu.dtype == np.int16:
        return _lut(window)[np.ascontiguousarray(hu).view(np.uint16)]
    scaled = (np.asarray(hu, np.float32) - np.float32(window.low)) * np.float32(
        255.0 / window.width
    )
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)
