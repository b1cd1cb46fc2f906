"""R1's and the path-length term's gradients as the reference computes them.

Fixtures (shared/fixtures/nvlabs): `r1_grad` = d sum D(r1_x, c) / d r1_x and `pl_grad` =
d sum G_ema.synthesis(ws, const noise) * pl_y / d ws, written by the reference from its own
pickles, train mode, fp32. Larger networks: reference-named tensors for a bigger config go
through the importer's name mapping into ours, and a slow float64 implementation of the
reference's ops (tests/trainer/reference_nets.py) is the target. Both compare to 1e-5 of the
largest value, up to ties at a leaky-ReLU kink (tests/trainer/kinks.py): gray64-fp16's R1 has
one, a conv0 pre-activation of +2.2e-7 (float64) that the reference's fp32 sums put below zero.
A whole path-length step and a whole R1 step (our loss code vs the reference's, float64) are
compared the same way.
"""

from __future__ import annotations

import math
import os

import numpy as np
import pytest
import torch

from tests.trainer import reference_nets as ref
from tests.trainer.helpers import REPO
from tests.trainer.kinks import match_up_to_ties, relative_error
from trainer.config import LossConfig
from trainer.import_pkl import (
    build_discriminator,
    build_generator,
    discriminator_tensor_name,
    generator_tensor_name,
    load_reference_discriminator,
    load_reference_generator,
)
from trainer.loss import StyleGAN2Loss
from trainer.networks import Discriminator, Generator
from trainer.safe_pickle import load_pickle, module_tensors

FIXTURES = os.path.join(os.path.dirname(REPO), "shared", "fixtures", "nvlabs")
NAMES = ["gray32", "rgb32-cond2", "gray64-fp16"]
TOL = 1e-5
MAX_TIES = 2  # units switched at a kink; each is within 1e-6 of its layer's RMS of zero


def r1_grad(D: torch.nn.Module, x: torch.Tensor, c: torch.Tensor | None):
    def run() -> torch.Tensor:
        xg = x.detach().clone().requires_grad_(True)
        (g,) = torch.autograd.grad(D(xg, c).sum(), xg)
        return g

    return run


def pl_grad(G: torch.nn.Module, ws: torch.Tensor, y: torch.Tensor):
    def run() -> torch.Tensor:
        wg = ws.detach().clone().requires_grad_(True)
        img = G.synthesis(wg, noise_mode="const")
        (g,) = torch.autograd.grad((img * y).sum(), wg)
        return g

    return run


def check(net, run, target) -> None:
    got, switched = match_up_to_ties(net, run, target, TOL)
    assert relative_error(got, target) < TOL
    assert len(switched) <= MAX_TIES, switched


@pytest.fixture(scope="module")
def fixture_nets():
    if not os.path.isdir(FIXTURES):
        pytest.fail(f"reference fixtures missing: {FIXTURES}")
    nets = {}
    for name in NAMES:
        data = load_pickle(os.path.join(FIXTURES, name + ".pkl"))
        G = build_generator(data["G_ema"]).train().requires_grad_(False)
        D = build_discriminator(data["D"]).train().requires_grad_(False)
        nets[name] = G, D, np.load(os.path.join(FIXTURES, name + ".expected.npz"))
    return nets


@pytest.mark.parametrize("name", NAMES)
def test_r1_gradient_is_the_references(fixture_nets, name, one_thread):
    _, D, e = fixture_nets[name]
    c = torch.from_numpy(e["c"]) if e["c"].shape[1] else None
    check(D, r1_grad(D, torch.from_numpy(e["r1_x"]), c), torch.from_numpy(e["r1_grad"]))


@pytest.mark.parametrize("name", NAMES)
def test_path_length_gradient_is_the_references(fixture_nets, name, one_thread):
    G, _, e = fixture_nets[name]
    run = pl_grad(G, torch.from_numpy(e["ws"]), torch.from_numpy(e["pl_y"]))
    check(G, run, torch.from_numpy(e["pl_grad"]))


TIE = (1, 6, 9, 61)  # gray64-fp16, D's first conv0: sample, channel, row, column


def test_gray64_r1_differs_only_by_the_branch_of_one_unit_at_its_kink(fixture_nets, one_thread):
    """The cause of gray64-fp16's R1 deviation: conv0's pre-activation at TIE is +2.2e-7 in
    float64 (fp32 rounding of sums of ~1e1 terms is ~1e-6), and the fixture is the gradient of
    its negative branch. With that branch our gradient is the fixture's; with the positive one
    only conv0's 3x3 footprint around TIE differs."""
    _, D, e = fixture_nets["gray64-fp16"]
    p = {
        k: v.double()
        for k, v in module_tensors(load_pickle(FIXTURES + "/gray64-fp16.pkl")["D"]).items()
    }
    x = torch.from_numpy(e["r1_x"]).double()
    h = ref.conv_layer(p, "b64.fromrgb", x, clamp=256.0)
    w = p["b64.conv0.weight"] / math.sqrt(p["b64.conv0.weight"][0].numel())
    pre = torch.nn.functional.conv2d(h, w, padding=1) + p["b64.conv0.bias"][None, :, None, None]
    assert 0 < float(pre[TIE]) < 1e-6
    conv0 = D.blocks[0].conv0
    grads = {}
    for branch in ("negative", "positive"):

        def force(module, _inp, out, branch=branch):
            scale = torch.ones_like(out)
            if branch == "negative" and out[TIE] > 0:
                scale[TIE] = 0.2
            if branch == "positive" and out[TIE] < 0:
                scale[TIE] = 5.0
            return out * scale

        handle = conv0.register_forward_hook(force)
        try:
            grads[branch] = r1_grad(D, torch.from_numpy(e["r1_x"]), None)().numpy()
        finally:
            handle.remove()
    ref_grad = e["r1_grad"]
    assert np.abs(grads["negative"] - ref_grad).max() < 1e-6 * np.abs(ref_grad).max()
    off = np.argwhere(np.abs(grads["positive"] - ref_grad) > TOL * np.abs(ref_grad).max())
    assert len(off) > 0 and np.abs(off[:, 2:] - np.array(TIE[2:])).max() <= 1
    assert set(off[:, 0]) == {TIE[0]}


# Larger than the fixtures (64 channels): the regressions the fixtures' sizes did not show.
LARGER = {
    "cond32": ref.Config(res=32, img_channels=3, c_dim=2, channel_base=8192, channel_max=256),
    "gray64": ref.Config(res=64, img_channels=1, c_dim=0, channel_base=8192, channel_max=128),
}


def our_nets(cfg: ref.Config, params: dict) -> tuple[Generator, Discriminator]:
    """Ours, built with our own constructor and filled through the importer's name mapping."""
    G = Generator(**cfg.generator_kwargs())
    D = Discriminator(**cfg.discriminator_kwargs())
    load_reference_generator(G, {k: v.float() for k, v in params["G"].items()})
    load_reference_discriminator(D, {k: v.float() for k, v in params["D"].items()})
    return G.train().requires_grad_(False), D.train().requires_grad_(False)


def larger(name: str, seed: int):
    """The config, its reference-named tensors, our G and D from them, and a float64 draw."""
    cfg = LARGER[name]
    params = ref.random_params(cfg, seed=seed)
    gen = torch.Generator().manual_seed(seed + 1)

    def randn(*shape: int) -> torch.Tensor:
        return torch.randn(list(shape), generator=gen, dtype=torch.float64)

    return cfg, params, *our_nets(cfg, params), randn


@pytest.mark.parametrize("name", sorted(LARGER))
def test_larger_networks_r1_gradient_is_the_reference_ops(name, one_thread):
    cfg, params, _, D, randn = larger(name, seed=1)
    x = randn(4, cfg.img_channels, cfg.res, cfg.res)
    c = None
    if cfg.c_dim:
        c = torch.eye(cfg.c_dim, dtype=torch.float64)[torch.arange(4) % cfg.c_dim]
    xg = x.clone().requires_grad_(True)
    (target,) = torch.autograd.grad(ref.discriminator(params["D"], cfg, xg, c).sum(), xg)
    check(D, r1_grad(D, x.float(), None if c is None else c.float()), target)


@pytest.mark.parametrize("name", sorted(LARGER))
def test_larger_networks_path_length_gradient_is_the_reference_ops(name, one_thread):
    """gray64 has a tie here: one SynthesisLayer unit at -1.5e-8 in our fp32."""
    cfg, params, G, _, randn = larger(name, seed=3)
    ws = randn(4, G.num_ws, cfg.w_dim)
    y = randn(4, cfg.img_channels, cfg.res, cfg.res)
    wg = ws.clone().requires_grad_(True)
    (target,) = torch.autograd.grad((ref.synthesis(params["G"], cfg, wg) * y).sum(), wg)
    check(G, pl_grad(G, ws.float(), y.float()), target)


def reference_pl_step(params: dict, cfg: ref.Config, z, lc: LossConfig, pl_mean: float, gain):
    """The reference's Greg phase (its loss code's order of random draws: style-mixing cutoff,
    mixing coin, second z, each layer's noise, the path-length noise) in float64; returns the
    gradient of every G tensor, named as the reference names it."""
    p = {k: v.clone().requires_grad_(k.rsplit(".", 1)[-1] not in ("w_avg", "noise_const",
         "resample_filter")) for k, v in params.items()}  # fmt: skip
    n = z.shape[0] // lc.pl_batch_shrink
    num_ws = 2 * int(math.log2(cfg.res)) - 2
    ws = ref.mapping(p, cfg, z[:n].double(), None, num_ws)
    cutoff = torch.empty([], dtype=torch.int64).random_(1, num_ws)
    cutoff = torch.where(torch.rand([]) < lc.style_mixing, cutoff, torch.full_like(cutoff, num_ws))
    ws2 = ref.mapping(p, cfg, torch.randn_like(z[:n]).double(), None, num_ws)
    ws = ws.clone()
    ws[:, cutoff:] = ws2[:, cutoff:]
    img = ref.synthesis(p, cfg, ws, noise=lambda r: torch.randn([n, 1, r, r]).double())
    pl_noise = torch.randn(list(img.shape)).double() / math.sqrt(img.shape[2] * img.shape[3])
    (pl_grads,) = torch.autograd.grad((img * pl_noise).sum(), ws, create_graph=True)
    pl_lengths = pl_grads.square().sum(2).mean(1).sqrt()
    mean = torch.tensor(pl_mean, dtype=torch.float64).lerp(pl_lengths.mean(), lc.pl_decay)
    loss = (pl_lengths - mean).square() * lc.pl_weight
    (img[:, 0, 0, 0] * 0 + loss).mean().mul(gain).backward()
    return {k: t.grad for k, t in p.items() if t.grad is not None}


def test_a_whole_path_length_step_is_the_references(one_thread):
    """G's gradients after one path-length step of our loss code equal the reference's loss
    code's on the same weights, latents and random draws (style mixing, noise, pl noise, the
    half batch, pl_mean updated before the penalty), to 1e-5 up to ties at a kink."""
    cfg = ref.Config(res=32, img_channels=1, c_dim=0, channel_base=2048, channel_max=64)
    params = ref.random_params(cfg, seed=5)
    G, D = our_nets(cfg, params)
    G.requires_grad_(True)
    lc, gain, seed = LossConfig(), 4.0, 1  # seed 1 draws one tie (a SynthesisLayer unit)
    loss = StyleGAN2Loss(G, D, None, lc, torch.device("cpu"))
    z = torch.randn([8, cfg.z_dim], generator=torch.Generator().manual_seed(9))
    torch.manual_seed(seed)
    want = reference_pl_step(params["G"], cfg, z, lc, 0.3, gain)
    res = G.synthesis.block_resolutions
    names, target = [], []
    for k, g in want.items():
        ours, rotated = generator_tensor_name(k, res)
        names.append(ours)
        target.append((g.flip([2, 3]) if rotated else g).flatten())
    ours_params = dict(G.named_parameters())

    def step() -> torch.Tensor:
        torch.manual_seed(seed)
        loss.pl_mean.fill_(0.3)
        G.zero_grad(set_to_none=True)
        loss.g_pl(z, None, gain)
        return torch.cat([ours_params[name].grad.flatten() for name in names])

    step()
    assert {k for k, v in ours_params.items() if v.grad is not None} == set(names)
    check(G, step, torch.cat(target))


def test_a_whole_r1_step_is_the_references(one_thread):
    """D's gradients after one R1 step (the double backward through every resampling, the skip
    and minibatch std) equal the reference's Dr1 loss code's, float64, conditional, to 1e-5 up to
    ties at a kink."""
    cfg = ref.Config(res=32, img_channels=3, c_dim=2, channel_base=2048, channel_max=64)
    params = ref.random_params(cfg, seed=7)
    G, D = our_nets(cfg, params)
    D.requires_grad_(True)
    lc, gain = LossConfig(r1_gamma=3.0), 16.0
    loss = StyleGAN2Loss(G, D, None, lc, torch.device("cpu"))
    gen = torch.Generator().manual_seed(8)
    real = torch.randn([4, 3, 32, 32], generator=gen, dtype=torch.float64)
    c = torch.eye(2, dtype=torch.float64)[torch.tensor([0, 1, 1, 0])]

    p = {
        k: v.clone().requires_grad_(not k.endswith("resample_filter"))
        for k, v in params["D"].items()
    }
    x = real.clone().requires_grad_(True)
    logits = ref.discriminator(p, cfg, x, c)
    (r1,) = torch.autograd.grad(logits.sum(), x, create_graph=True)
    penalty = r1.square().sum([1, 2, 3]) * (lc.r1_gamma / 2)
    (logits * 0 + penalty[:, None]).mean().mul(gain).backward()
    res = D.block_resolutions
    want = {discriminator_tensor_name(k, res): t.grad for k, t in p.items() if t.grad is not None}
    ours_params = dict(D.named_parameters())

    def step() -> torch.Tensor:
        D.zero_grad(set_to_none=True)
        loss.d_r1(real.float(), c.float(), gain)
        return torch.cat([ours_params[name].grad.flatten() for name in want])

    step()
    assert {k for k, v in ours_params.items() if v.grad is not None} == set(want)
    check(D, step, torch.cat([g.flatten() for g in want.values()]))
