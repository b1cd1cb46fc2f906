"""The ADA paper's named augmentation pipes (no torch import: the CLI and the app use them).

Groups: blit (x-flip, quarter turns, integer shifts), geom (scale, rotation, anisotropy,
fractional shift), color (brightness, contrast, luma flip, hue, saturation), filter, noise and
cutout; a pipe's name lists its groups' initials. The paper's default is bgc.
"""

from __future__ import annotations

_GROUPS = {
    "blit": ("xflip", "rotate90", "xint"),
    "geom": ("scale", "rotate", "aniso", "xfrac"),
    "color": ("brightness", "contrast", "lumaflip", "hue", "saturation"),
    "filter": ("imgfilter",),
    "noise": ("noise",),
    "cutout": ("cutout",),
}
MULTIPLIERS = tuple(name for group in _GROUPS.values() for name in group)
_LETTERS = {"b": "blit", "g": "geom", "c": "color", "f": "filter", "n": "noise"}
AUGPIPES = {
    **{name: group for name, group in _GROUPS.items()},
    **{
        combo: tuple(t for letter in combo for t in _GROUPS[_LETTERS[letter]])
        for combo in ("bg", "bgc", "bgcf", "bgcfn")
    },
    "bgcfnc": tuple(MULTIPLIERS),
}
DEFAULT_AUGPIPE = "bgc"


def augpipe_kwargs(name: str) -> dict[str, int]:
    """Every multiplier of a named pipe: 1 for its transforms, 0 for the others."""
    if name not in AUGPIPES:
        raise ValueError(f"unknown augpipe {name!r}; choose from {', '.join(AUGPIPES)}")
    return {t: int(t in AUGPIPES[name]) for t in MULTIPLIERS}
