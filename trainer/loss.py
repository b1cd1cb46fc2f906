"""StyleGAN2 losses, one function per training phase; each calls backward and returns stats.

Every image the discriminator sees goes through the augmentation pipeline. Regularisation
phases multiply their loss by `gain` (their interval), the lazy-regularisation convention.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from trainer.config import LossConfig
from trainer.distributed import all_reduce_mean_

Stats = dict[str, torch.Tensor]


class StyleGAN2Loss:
    """Holds the networks and the path-length running mean the phases share."""

    def __init__(
        self,
        G: torch.nn.Module,
        D: torch.nn.Module,
        augment_pipe: torch.nn.Module | None,
        cfg: LossConfig,
        device: torch.device,
        compiled: bool = False,
        channels_last: bool = False,
    ) -> None:
        self.G, self.D, self.augment_pipe, self.cfg = G, D, augment_pipe, cfg
        self.pl_mean = torch.zeros([], device=device)
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        # torch.compile has no double backward: the regularisers use the plain modules.
        self.synthesis_fast = torch.compile(G.synthesis) if compiled else G.synthesis
        self.D_fast = torch.compile(D) if compiled else D

    def run_G(
        self, z: torch.Tensor, c: torch.Tensor | None, update_emas: bool = False, fast: bool = True
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Images [N, C, R, R] and the ws [N, num_ws, w_dim] they came from, with style mixing."""
        ws = self.G.mapping(z, c, update_emas=update_emas)
        if self.cfg.style_mixing > 0:
            num_ws = ws.shape[1]
            cutoff = torch.randint(1, num_ws, [], device=ws.device)
            mix = torch.rand([], device=ws.device) < self.cfg.style_mixing
            cutoff = torch.where(mix, cutoff, torch.full_like(cutoff, num_ws))
            ws2 = self.G.mapping(torch.randn_like(z), c, update_emas=False)
            use2 = torch.arange(num_ws, device=ws.device) >= cutoff  # [num_ws]
            ws = torch.where(use2[None, :, None], ws2, ws)
        synthesis = self.synthesis_fast if fast else self.G.synthesis
        return synthesis(ws), ws

    def run_D(self, img: torch.Tensor, c: torch.Tensor | None, fast: bool = True) -> torch.Tensor:
        """D's logits [N, 1] on augmented images."""
        if self.augment_pipe is not None:
            img = self.augment_pipe(img)
        img = img.contiguous(memory_format=self.memory_format)
        return (self.D_fast if fast else self.D)(img, c)

    def g_main(self, z: torch.Tensor, c: torch.Tensor | None, gain: float = 1.0) -> Stats:
        """Non-saturating logistic loss: softplus(-D(G(z)))."""
        img, _ = self.run_G(z, c)
        logits = self.run_D(img, c)
        loss = F.softplus(-logits)  # [N, 1]
        loss.mean().mul(gain).backward()
        return {"loss_G": loss.detach().mean(), "score_fake": logits.detach().mean()}

    def g_pl(self, z: torch.Tensor, c: torch.Tensor | None, gain: float) -> Stats:
        """Path-length regulariser on a shrunk batch: keep |J_w^T y| close to its running mean."""
        n = max(z.shape[0] // self.cfg.pl_batch_shrink, 1)
        z, c = z[:n], (None if c is None else c[:n])
        img, ws = self.run_G(z, c, fast=False)
        noise = torch.randn_like(img) / math.sqrt(img.shape[2] * img.shape[3])
        (grads,) = torch.autograd.grad((img * noise).sum(), ws, create_graph=True)
        lengths = grads.square().sum(2).mean(1).sqrt()  # [n]
        # As the reference, the gradient flows through the running mean too (not detached).
        # Its value is the mean over all ranks, so pl_mean stays identical everywhere; the
        # gradient goes through this rank's lengths (exactly the reference with one process).
        local = lengths.mean()
        everywhere = local.detach().reshape(1).clone()
        all_reduce_mean_([everywhere])
        batch_mean = local + (everywhere[0] - local.detach())
        pl_mean = self.pl_mean.lerp(batch_mean, self.cfg.pl_decay)
        self.pl_mean.copy_(pl_mean.detach())
        penalty = (lengths - pl_mean).square()
        loss = penalty * self.cfg.pl_weight
        (img[:, 0, 0, 0] * 0 + loss).mean().mul(gain).backward()
        return {"pl": penalty.detach().mean(), "pl_mean": pl_mean.detach()}

    def d_main(
        self,
        z: torch.Tensor,
        c: torch.Tensor | None,
        real: torch.Tensor,
        real_c: torch.Tensor | None,
        gain: float = 1.0,
    ) -> tuple[Stats, torch.Tensor]:
        """softplus(D(fake)) + softplus(-D(real)); also returns the real logits for ADA."""
        with torch.no_grad():
            fake, _ = self.run_G(z, c, update_emas=True)
        fake_logits = self.run_D(fake, c)
        loss_fake = F.softplus(fake_logits)
        loss_fake.mean().mul(gain).backward()
        real_logits = self.run_D(real.detach(), real_c)
        loss_real = F.softplus(-real_logits)
        loss_real.mean().mul(gain).backward()
        stats = {
            "loss_D": (loss_fake.detach().mean() + loss_real.detach().mean()),
            "score_real": real_logits.detach().mean(),
            "score_fake_D": fake_logits.detach().mean(),
        }
        return stats, real_logits.detach()

    def d_r1(self, real: torch.Tensor, real_c: torch.Tensor | None, gain: float) -> Stats:
        """R1: gamma/2 * |dD(x)/dx|^2 on reals (through the augmentation)."""
        real = real.detach().requires_grad_(True)
        logits = self.run_D(real, real_c, fast=False)
        (grads,) = torch.autograd.grad(logits.sum(), real, create_graph=True)
        penalty = grads.square().sum([1, 2, 3])  # [N]
        loss = penalty * (self.cfg.r1_gamma / 2)
        (logits[:, 0] * 0 + loss).mean().mul(gain).backward()
        return {"r1": penalty.detach().mean()}
