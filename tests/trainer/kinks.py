"""Comparing gradients up to ties at a leaky-ReLU kink.

A pre-activation within fp32 rounding of zero (|v| ~ 1e-7 of its layer's scale) takes either
branch of lrelu depending on the order in which its sums were rounded, and the branch sets the
slope (1 or 0.2) every gradient through that unit gets. Two correct implementations that round
differently can therefore disagree on such a unit: a local patch of the input gradient differs
by up to 80 %, although both compute the same function. `match_up_to_ties` names those units
in our network (|output| below `eps` times the layer's RMS), switches a unit's branch where
that brings our gradient closer to the target (a forward hook: the output is scaled by 0.2 or
5 at that unit, so its slope changes while its value, ~1e-7, hardly moves), and returns the
gradient with those switches. Every other unit must then agree, so a wrong derivative anywhere
still shows; the switched units are returned for the caller to bound.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from trainer.layers import Conv2dLayer, FullyConnected, SynthesisLayer

Unit = tuple[torch.nn.Module, tuple[int, ...]]


def lrelu_modules(net: torch.nn.Module) -> list[torch.nn.Module]:
    """Every module whose output is a leaky ReLU's (then clamp's) output."""
    return [
        m
        for m in net.modules()
        if isinstance(m, SynthesisLayer)
        or (isinstance(m, (Conv2dLayer, FullyConnected)) and m.activation == "lrelu")
    ]


def near_kink_units(
    net: torch.nn.Module, run: Callable[[], torch.Tensor], eps: float
) -> list[Unit]:
    """Units whose lrelu output is within `eps` x the layer's RMS of zero in one run, the
    nearest first."""
    found: list[tuple[float, int, Unit]] = []

    def record(module, _inp, out):
        y = out.detach().float()
        ratio = y.abs() / y.square().mean().sqrt()
        for idx in torch.nonzero(ratio <= eps).tolist():
            found.append((float(ratio[tuple(idx)]), len(found), (module, tuple(idx))))

    handles = [m.register_forward_hook(record) for m in lrelu_modules(net)]
    try:
        run()
    finally:
        for h in handles:
            h.remove()
    return [unit for _, _, unit in sorted(found)]


def with_switched(
    net: torch.nn.Module, units: list[Unit], run: Callable[[], torch.Tensor]
) -> torch.Tensor:
    """`run()` with each unit's lrelu branch switched (its slope 1 <-> 0.2)."""
    by_module: dict[torch.nn.Module, list[tuple[int, ...]]] = {}
    for module, idx in units:
        by_module.setdefault(module, []).append(idx)

    def switch(module, _inp, out):
        scale = torch.ones_like(out)
        for idx in by_module[module]:
            scale[idx] = 0.2 if out[idx] > 0 else 5.0
        return out * scale

    handles = [m.register_forward_hook(switch) for m in by_module]
    try:
        return run()
    finally:
        for h in handles:
            h.remove()


def match_up_to_ties(
    net: torch.nn.Module,
    grad: Callable[[], torch.Tensor],
    target: torch.Tensor,
    tol: float,
    eps: float = 1e-6,
) -> tuple[torch.Tensor, list[Unit]]:
    """Our gradient, with the near-kink units switched that bring it closer to `target`
    (greedy, by squared error: ties sit far apart, each changes only its own patch); no
    search once it agrees to `tol` relative to the largest value."""
    target = target.to(torch.float64)

    def sq_err(units: list[Unit]) -> tuple[float, torch.Tensor]:
        g = with_switched(net, units, grad).detach().to(torch.float64)
        return float((g - target).square().sum()), g

    switched: list[Unit] = []
    best, g = sq_err(switched)
    if relative_error(g, target) < tol:
        return g, switched  # nothing to explain (the search costs one gradient per unit)
    for unit in near_kink_units(net, grad, eps):
        err, g2 = sq_err(switched + [unit])
        if err < best:
            switched, best, g = switched + [unit], err, g2
            if relative_error(g, target) < tol:
                break
    return g, switched


def relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    """max |a - b| relative to the largest |b|."""
    a, b = a.to(torch.float64), b.to(torch.float64)
    return float((a - b).abs().max() / b.abs().max())
