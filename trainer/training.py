"""The training state (networks, optimizers, ADA, counters) and one minibatch of StyleGAN2-ADA.

The minibatch runs the phases G main, G path length (lazy), D main, D R1 (lazy), then the EMA,
the counters and the ADA adjustment: the same per-step work as the reference method.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass

import torch

from trainer import distributed, snapshot
from trainer.ada import AdaTuner
from trainer.config import RunConfig
from trainer.dataset import ImageDataset, InfiniteSampler
from trainer.distributed import DistInfo
from trainer.ema import ema_beta, update_ema
from trainer.loss import StyleGAN2Loss
from trainer.stats import TickStats


@dataclass
class Phase:
    name: str
    net: str  # "G" or "D"
    interval: int
    run: Callable[[dict, float], dict]


def lazy_adam(
    params,
    lr: float,
    betas: tuple[float, float],
    eps: float,
    interval: int | None,
    fused: bool = False,
) -> torch.optim.Adam:
    """Adam with the lazy-regularisation correction: lr and betas scaled by ratio k/(k+1)."""
    ratio = interval / (interval + 1) if interval else 1.0
    return torch.optim.Adam(
        params,
        lr=lr * ratio,
        betas=(betas[0] ** ratio, betas[1] ** ratio),
        eps=eps,
        fused=fused or None,
    )


class Trainer:
    """Everything a run updates; `state_dict` is the whole of it, so resume is exact."""

    def __init__(
        self,
        cfg: RunConfig,
        dataset: ImageDataset,
        device: torch.device,
        dist_info: DistInfo = DistInfo(),
    ) -> None:
        from trainer.networks import Discriminator, Generator, allow_cpu_bf16

        self.cfg, self.dataset, self.device, self.dist = cfg, dataset, device, dist_info
        tc, lc = cfg.train, cfg.loss
        if tc.batch % dist_info.world_size:
            raise ValueError(
                f"--batch {tc.batch} is not divisible by {dist_info.world_size} processes"
            )
        self.batch_gpu = tc.batch // dist_info.world_size
        torch.manual_seed(tc.seed)  # identical initial weights on every rank
        self.G = Generator(**cfg.network.generator_kwargs()).to(device).train()
        self.D = Discriminator(**cfg.network.discriminator_kwargs()).to(device).train()
        self.G_ema = copy.deepcopy(self.G).eval()
        for net in (self.G, self.D, self.G_ema):
            net.requires_grad_(False)
            if tc.cpu_bf16 and device.type == "cpu":
                allow_cpu_bf16(net)
            if tc.channels_last:
                net.to(memory_format=torch.channels_last)
        self.augment_pipe, self.ada = self._build_augment()
        pl_int = lc.pl_interval if lc.pl_weight > 0 else None
        r1_int = lc.r1_interval if lc.r1_gamma > 0 else None
        fused = True  # one pass over all parameters per step (CUDA and, since torch 2.4, CPU)
        self.opt = {
            "G": lazy_adam(self.G.parameters(), tc.lr, tc.betas, tc.eps, pl_int, fused),
            "D": lazy_adam(self.D.parameters(), tc.lr, tc.betas, tc.eps, r1_int, fused),
        }
        self.loss = StyleGAN2Loss(
            self.G,
            self.D,
            self.augment_pipe,
            lc,
            device,
            compiled=tc.compile,
            channels_last=tc.channels_last,
        )
        self.phases = self._phases(pl_int, r1_int)
        self.sampler = InfiniteSampler(len(dataset), seed=tc.seed)
        self.cur_nimg = self.batch_idx = 0
        self.tick_stats = TickStats()
        snapshot.seed_all(tc.seed * dist_info.world_size + dist_info.rank)

    def _build_augment(self) -> tuple[torch.nn.Module | None, AdaTuner | None]:
        """The pipeline (none for 'noaug') and its p tuner (only for 'ada')."""
        ac = self.cfg.augment
        if ac.mode == "noaug":
            return None, None
        from trainer.augment import AugmentPipe, augpipe_kwargs

        kwargs = {**augpipe_kwargs(ac.pipe), **ac.pipe_kwargs}
        labels = getattr(self.cfg.network, "label_channels", 0)
        if labels:  # mask channels take the geometry and filter, never colour/noise/cutout
            kwargs["image_channels"] = self.cfg.network.img_channels - labels
        pipe = AugmentPipe(**kwargs).train().requires_grad_(False).to(self.device)
        pipe.p.copy_(torch.as_tensor(ac.initial_p))
        if ac.mode != "ada":
            return pipe, None
        batch = self.cfg.train.batch
        return pipe, AdaTuner(pipe, ac.target, ac.interval, ac.kimg, batch, self.device)

    def _phases(self, pl_int: int | None, r1_int: int | None) -> list[Phase]:
        L = self.loss
        phases = [Phase("G_main", "G", 1, lambda b, g: L.g_main(b["z"], b["c"], g))]
        if pl_int:
            phases.append(Phase("G_pl", "G", pl_int, lambda b, g: L.g_pl(b["z"], b["c"], g)))
        phases.append(Phase("D_main", "D", 1, self._d_main))
        if r1_int:
            phases.append(
                Phase("D_r1", "D", r1_int, lambda b, g: L.d_r1(b["real"], b["real_c"], g))
            )
        return phases

    def _d_main(self, b: dict, gain: float) -> dict:
        stats, real_logits = self.loss.d_main(b["z"], b["c"], b["real"], b["real_c"], gain)
        if self.ada is not None:
            self.ada.accumulate(real_logits)
        stats["rt"] = real_logits.sign().mean()
        return stats

    def _labels(self, idx: torch.Tensor) -> torch.Tensor | None:
        c_dim = self.cfg.network.c_dim
        return self.dataset.get_labels(idx, c_dim).to(self.device) if c_dim else None

    def _fake_labels(self) -> torch.Tensor | None:
        """Conditions for fakes, drawn from the dataset's label distribution."""
        if not self.cfg.network.c_dim:
            return None
        return self._labels(torch.randint(len(self.dataset), [self.batch_gpu]))

    def _real_batch(self) -> dict:
        idx = self.sampler.next_batch(self.cfg.train.batch, self.dist.rank, self.dist.world_size)
        real = self.dataset.get_images(idx).to(self.device, non_blocking=True)  # [B, C, R, R]
        if self.cfg.train.channels_last:
            real = real.contiguous(memory_format=torch.channels_last)
        return {"real": real, "real_c": self._labels(idx)}

    def step(self) -> None:
        """One minibatch: every due phase, then EMA, counters and ADA."""
        batch = self._real_batch()
        for phase in self.phases:
            if self.batch_idx % phase.interval != 0:
                continue
            batch["z"] = torch.randn([self.batch_gpu, self.G.z_dim], device=self.device)
            batch["c"] = self._fake_labels()
            self._run_phase(phase, batch)
        tc = self.cfg.train
        beta = ema_beta(tc.batch, self.cur_nimg, tc.ema_kimg, tc.ema_rampup)
        distributed.all_reduce_mean_([self.G.mapping.w_avg])  # the only buffer that trains
        update_ema(self.G_ema, self.G, beta)
        self.cur_nimg += tc.batch
        self.batch_idx += 1
        if self.ada is not None:
            self.ada.maybe_adjust(self.batch_idx)

    def _run_phase(self, phase: Phase, batch: dict) -> None:
        net = self.G if phase.net == "G" else self.D
        opt = self.opt[phase.net]
        opt.zero_grad(set_to_none=True)
        net.requires_grad_(True)
        stats = phase.run(batch, float(phase.interval))
        distributed.average_gradients(net)
        net.requires_grad_(False)
        for p in net.parameters():
            if p.grad is not None:
                torch.nan_to_num_(p.grad, nan=0.0, posinf=1e5, neginf=-1e5)
        opt.step()
        self.tick_stats.add(stats)

    @property
    def augment_p(self) -> float:
        return 0.0 if self.augment_pipe is None else float(self.augment_pipe.p.item())

    def state_dict(self) -> dict:
        """Weights, optimizers, ADA, counters and sampler; RNG and options are added by the loop."""
        return {
            "G": snapshot.module_state(self.G),
            "D": snapshot.module_state(self.D),
            "G_ema": snapshot.module_state(self.G_ema),
            "opt_G": self.opt["G"].state_dict(),
            "opt_D": self.opt["D"].state_dict(),
            "augment": {
                "p": self.augment_p,
                "ada": None if self.ada is None else self.ada.state_dict(),
            },
            "pl_mean": self.loss.pl_mean.detach().cpu().clone(),
            "sampler": self.sampler.state_dict(),
            "counters": {"cur_nimg": self.cur_nimg, "batch_idx": self.batch_idx},
            "tick_stats": self.tick_stats.state_dict(),
        }

    def load_weights(self, state: dict) -> None:
        """What fine-tuning keeps: weights, optimizer moments, augment p and pl_mean."""
        self.G.load_state_dict(state["G"]["state_dict"])
        self.D.load_state_dict(state["D"]["state_dict"])
        self.G_ema.load_state_dict(state["G_ema"]["state_dict"])
        if state.get("opt_G") is not None:  # an imported checkpoint has no optimizer state
            self.opt["G"].load_state_dict(state["opt_G"])
        if state.get("opt_D") is not None:
            self.opt["D"].load_state_dict(state["opt_D"])
        if self.augment_pipe is not None and self.cfg.augment.mode == "ada":
            self.augment_pipe.p.copy_(torch.as_tensor(state["augment"]["p"]))
        self.loss.pl_mean.copy_(state["pl_mean"])

    def load_state_dict(self, state: dict) -> None:
        """Exact resume of the same run: everything, including counters and data position."""
        self.load_weights(state)
        if self.ada is not None and state["augment"]["ada"] is not None:
            self.ada.load_state_dict(state["augment"]["ada"])
        self.sampler.load_state_dict(state["sampler"])
        self.cur_nimg = int(state["counters"]["cur_nimg"])
        self.batch_idx = int(state["counters"]["batch_idx"])
        self.tick_stats.load_state_dict(state["tick_stats"], self.device)
