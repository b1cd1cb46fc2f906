"""Adaptive discriminator augmentation: tune p from the sign of D's outputs on reals (ADA §2.3)."""

from __future__ import annotations

import torch

from trainer.distributed import all_reduce_sum


class AdaTuner:
    """Accumulates sign(D(real_aug)) and nudges the pipeline's p toward r_t = target.

    p moves by sign(r_t - target) * batch * interval / (kimg * 1000) every `interval`
    minibatches, so it can go from 0 to 1 in `kimg` thousand images.
    """

    def __init__(
        self,
        pipe: torch.nn.Module,
        target: float,
        interval: int,
        kimg: float,
        batch: int,
        device: torch.device | str = "cpu",
    ) -> None:
        self.pipe, self.target, self.interval = pipe, target, interval
        self.step_size = batch * interval / (kimg * 1000)
        self.acc = torch.zeros(2, dtype=torch.float64, device=device)  # [sum of signs, count]
        self.last_rt = float("nan")

    def accumulate(self, real_logits: torch.Tensor) -> None:
        """Record D's logits [N, 1] on augmented reals; no host sync."""
        s = real_logits.detach().sign().double()
        self.acc += torch.stack([s.sum(), s.new_tensor(float(s.numel()))])

    def maybe_adjust(self, batch_idx: int) -> None:
        """Call after batch_idx was incremented; adjusts every `interval` minibatches."""
        if batch_idx % self.interval != 0:
            return
        total = all_reduce_sum(self.acc.clone())
        self.acc.zero_()
        if total[1].item() == 0:
            return
        rt = (total[0] / total[1]).item()
        self.last_rt = rt
        sign = (rt > self.target) - (rt < self.target)
        p = self.pipe.p
        p.copy_((p + sign * self.step_size).clamp(0.0, 1.0))

    def state_dict(self) -> dict:
        return {"acc": self.acc.cpu().clone(), "last_rt": self.last_rt}

    def load_state_dict(self, state: dict) -> None:
        self.acc.copy_(state["acc"])
        self.last_rt = float(state["last_rt"])
