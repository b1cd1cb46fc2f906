"""Change a network's image channel count exactly: RGB <-> gray for imported checkpoints.

G: ToRGB rows combined with the BT.601 luma weights, so the gray generator's output is the luma
of the RGB one (gray -> RGB repeats the row). D: FromRGB columns summed (scaled for the
equalized-lr gain), so D_gray(x) = D_rgb(x, x, x); RGB from gray averages the channels.
"""

from __future__ import annotations

import math
import re

import torch

LUMA = (0.299, 0.587, 0.114)  # ITU-R BT.601


class ChannelError(ValueError):
    """Only 1 <-> 3 channel conversions exist."""


def convert_generator(G, channels: int):
    """Same generator with `channels` outputs: RGB -> luma, or gray -> (x, x, x)."""
    from trainer.networks import Generator

    have = G.img_channels
    if channels == have:
        return G
    if {have, channels} != {1, 3}:
        raise ChannelError(f"cannot turn {have} channel(s) into {channels}")
    mix = torch.tensor([LUMA]) if channels == 1 else torch.ones(3, 1)  # [out, in]
    state = G.state_dict()
    for k in [k for k in state if re.search(r"torgb\.(conv\.weight|bias)$", k)]:
        w = state[k]
        state[k] = torch.einsum("oi,i...->o...", mix, w)
    G2 = Generator(**{**G.init_kwargs, "img_channels": channels})
    G2.load_state_dict(state)
    return G2


def convert_discriminator(D, channels: int):
    """Same discriminator reading `channels` inputs: D_gray(x) = D_rgb(x, x, x) and
    D_rgb(x) = D_gray(mean of x's channels)."""
    from trainer.networks import Discriminator

    have = D.img_channels
    if channels == have:
        return D
    if {have, channels} != {1, 3}:
        raise ChannelError(f"cannot turn {have} channel(s) into {channels}")
    state = D.state_dict()
    w = state["blocks.0.fromrgb.weight"]  # [C, in, 1, 1]
    w = w * math.sqrt(channels / have)  # equalized lr: the runtime gain is 1/sqrt(fan-in)
    state["blocks.0.fromrgb.weight"] = (
        w.sum(dim=1, keepdim=True) if channels == 1 else w.expand(-1, 3, -1, -1) / 3
    )
    D2 = Discriminator(**{**D.init_kwargs, "img_channels": channels})
    D2.load_state_dict(state)
    return D2
