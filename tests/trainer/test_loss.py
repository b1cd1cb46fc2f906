"""Loss phases against values computed directly, on linear stand-ins and on tiny real networks."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from trainer.augment import AugmentPipe
from trainer.config import LossConfig
from trainer.loss import StyleGAN2Loss
from trainer.networks import Discriminator, Generator
from trainer.training import lazy_adam

R = 8


class LinearMapping(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.A = torch.nn.Parameter(torch.randn(4, 4))

    def forward(self, z, c=None, update_emas=False):
        return (z @ self.A)[:, None].repeat(1, 3, 1)  # [N, 3, 4]


class LinearSynthesis(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.V = torch.nn.Parameter(torch.randn(4, R * R))

    def forward(self, ws):
        return (ws.sum(1) @ self.V).view(-1, 1, R, R)


class LinearG(torch.nn.Module):
    """img = (sum_k ws_k) V with ws_k = z A: every Jacobian is known in closed form."""

    z_dim = 4

    def __init__(self):
        super().__init__()
        self.mapping, self.synthesis = LinearMapping(), LinearSynthesis()


class LinearD(torch.nn.Module):
    """D(x) = <x, u> + b, so dD/dx = u for every sample."""

    def __init__(self):
        super().__init__()
        self.u = torch.nn.Parameter(torch.randn(R * R) * 0.1)
        self.b = torch.nn.Parameter(torch.tensor(0.3))

    def forward(self, img, c=None):
        return (img.flatten(1) @ self.u + self.b)[:, None]


def _linear_loss(**cfg):
    torch.manual_seed(0)
    G, D = LinearG(), LinearD()
    cfg = LossConfig(style_mixing=0.0, **cfg)
    return G, D, StyleGAN2Loss(G, D, None, cfg, torch.device("cpu"))


def test_g_main_is_nonsaturating_logistic():
    G, D, loss = _linear_loss()
    z = torch.randn(6, 4)
    G.requires_grad_(True)
    stats = loss.g_main(z, None)
    img = ((z @ G.mapping.A)[:, None].repeat(1, 3, 1).sum(1) @ G.synthesis.V).view(-1, 1, R, R)
    expected = F.softplus(-D(img)).mean()
    assert stats["loss_G"].item() == pytest.approx(expected.item(), rel=1e-5)
    grad = torch.autograd.grad(expected, G.synthesis.V)[0]
    torch.testing.assert_close(G.synthesis.V.grad, grad)


def test_d_main_is_logistic_on_fake_and_real():
    G, D, loss = _linear_loss()
    z, real = torch.randn(6, 4), torch.randn(6, 1, R, R)
    D.requires_grad_(True)
    stats, real_logits = loss.d_main(z, None, real, None)
    with torch.no_grad():
        fake = G.synthesis(G.mapping(z))
    expected = F.softplus(D(fake)).mean() + F.softplus(-D(real)).mean()
    assert stats["loss_D"].item() == pytest.approx(expected.item(), rel=1e-5)
    torch.testing.assert_close(real_logits, D(real).detach())
    grad = torch.autograd.grad(expected, D.u)[0]
    torch.testing.assert_close(D.u.grad, grad)


def test_r1_penalty_and_its_gradient_in_closed_form():
    G, D, loss = _linear_loss(r1_gamma=3.0)
    D.requires_grad_(True)
    stats = loss.d_r1(torch.randn(5, 1, R, R), None, gain=16.0)
    u = D.u.detach()
    assert stats["r1"].item() == pytest.approx(u.square().sum().item(), rel=1e-5)
    # d/du of 16 * gamma/2 * |u|^2 = 16 * gamma * u
    torch.testing.assert_close(D.u.grad, 16 * 3.0 * u)


def test_path_length_penalty_matches_its_definition():
    G, D, loss = _linear_loss(pl_weight=2.0, pl_decay=0.01, pl_batch_shrink=2)
    G.requires_grad_(True)
    z = torch.randn(8, 4)
    torch.manual_seed(5)
    stats = loss.g_pl(z, None, gain=4.0)
    torch.manual_seed(5)
    y = torch.randn(4, 1, R, R) / math.sqrt(R * R)  # the same draw as inside g_pl
    Vy = y.flatten(1) @ G.synthesis.V.detach().t()  # d<img, y>/d ws_k for every k: [4, 4]
    lengths = Vy.square().sum(1).sqrt()
    pl_mean = 0.01 * lengths.mean()
    assert loss.pl_mean.item() == pytest.approx(pl_mean.item(), rel=1e-5)
    assert stats["pl"].item() == pytest.approx((lengths - pl_mean).square().mean().item(), rel=1e-4)
    assert G.synthesis.V.grad is not None and torch.isfinite(G.synthesis.V.grad).all()


def test_r1_on_tiny_discriminator_equals_direct_input_gradient():
    torch.manual_seed(0)
    D = Discriminator(img_resolution=8, channel_base=64, channel_max=16, mbstd_group_size=2)
    loss = StyleGAN2Loss(
        Generator(z_dim=8, w_dim=8, img_resolution=8, channel_base=64, channel_max=16),
        D,
        None,
        LossConfig(r1_gamma=1.0),
        torch.device("cpu"),
    )
    real = torch.randn(4, 1, 8, 8)
    stats = loss.d_r1(real, None, gain=1.0)
    x = real.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(D(x).sum(), x)
    assert stats["r1"].item() == pytest.approx(g.square().sum([1, 2, 3]).mean().item(), rel=1e-5)


def _tiny_real(c_dim=0, p=0.5):
    torch.manual_seed(0)
    kw = dict(img_resolution=16, channel_base=128, channel_max=16)
    G = Generator(z_dim=16, w_dim=16, c_dim=c_dim, **kw).train()
    D = Discriminator(c_dim=c_dim, mbstd_group_size=2, **kw).train()
    pipe = AugmentPipe()
    pipe.p.fill_(p)
    G.requires_grad_(False)
    D.requires_grad_(False)
    return G, D, StyleGAN2Loss(G, D, pipe, LossConfig(r1_gamma=1.0), torch.device("cpu"))


@pytest.mark.parametrize("c_dim", [0, 2])
def test_every_phase_reaches_every_parameter_through_augmentation(c_dim):
    G, D, loss = _tiny_real(c_dim)
    c = torch.eye(2)[[0, 1, 1, 0]] if c_dim else None
    z, real = torch.randn(4, 16), torch.rand(4, 1, 16, 16) * 2 - 1
    phases = [
        (G, True, lambda: loss.g_main(z, c)),
        (G, False, lambda: loss.g_pl(z, c, 4.0)),
        (D, True, lambda: loss.d_main(z, c, real, c)[0]),
        (D, False, lambda: loss.d_r1(real, c, 16.0)),
    ]
    for net, main_phase, run in phases:
        net.requires_grad_(True)
        stats = run()
        assert all(torch.isfinite(v).all() for v in stats.values())
        for name, p in net.named_parameters():
            assert p.grad is not None and torch.isfinite(p.grad).all(), name
            assert not main_phase or p.grad.abs().sum() > 0, f"{name} gets no gradient"
        net.zero_grad(set_to_none=True)
        net.requires_grad_(False)


def test_main_phases_leave_the_other_network_untouched():
    G, D, loss = _tiny_real()
    G.requires_grad_(True)
    loss.g_main(torch.randn(4, 16), None)
    assert all(p.grad is None for p in D.parameters())


def test_style_mixing_switches_latents_at_one_cutoff():
    G, D, loss = _tiny_real()
    loss.cfg = LossConfig(style_mixing=1.0)
    torch.manual_seed(1)
    _, ws = loss.run_G(torch.randn(3, 16), None)
    changes = (ws[:, 1:] != ws[:, :-1]).any(2).any(0)  # [num_ws - 1]
    assert changes.sum() == 1
    loss.cfg = LossConfig(style_mixing=0.0)
    _, ws = loss.run_G(torch.randn(3, 16), None)
    assert (ws == ws[:, :1]).all()


def test_lazy_regularisation_corrects_adam():
    p = [torch.nn.Parameter(torch.zeros(1))]
    opt = lazy_adam(p, 0.0025, (0.0, 0.99), 1e-8, 16)
    group = opt.param_groups[0]
    assert group["lr"] == pytest.approx(0.0025 * 16 / 17)
    assert group["betas"] == pytest.approx((0.0, 0.99 ** (16 / 17)))
    assert lazy_adam(p, 0.1, (0.5, 0.9), 1e-8, None).param_groups[0]["lr"] == 0.1


def test_path_length_gradient_flows_through_the_running_mean_as_in_the_reference():
    G, D, loss = _linear_loss(pl_weight=2.0, pl_decay=0.5, pl_batch_shrink=1)
    loss.pl_mean.fill_(0.3)
    G.requires_grad_(True)
    z = torch.randn(4, 4)
    torch.manual_seed(6)
    loss.g_pl(z, None, gain=1.0)
    got = G.synthesis.V.grad.clone()
    torch.manual_seed(6)
    y = torch.randn(4, 1, R, R) / math.sqrt(R * R)
    V = G.synthesis.V.detach().clone().requires_grad_(True)
    lengths = (y.flatten(1) @ V.t()).square().sum(1).sqrt()
    for detach, close in ((False, True), (True, False)):
        mean = lengths.mean().detach() if detach else lengths.mean()
        pl_mean = torch.tensor(0.3).lerp(mean, 0.5)
        penalty = ((lengths - pl_mean).square() * 2.0).mean()
        (gv,) = torch.autograd.grad(penalty, V, retain_graph=True)
        assert torch.allclose(got, gv, rtol=1e-4, atol=1e-6) == close
