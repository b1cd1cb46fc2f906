"""ADA tuning: p rises while D is over-confident on reals and falls (to 0, not below) otherwise."""

from __future__ import annotations

import pytest
import torch

from trainer.ada import AdaTuner


class Pipe(torch.nn.Module):
    def __init__(self, p: float = 0.0):
        super().__init__()
        self.register_buffer("p", torch.tensor(p))


def _feed(tuner: AdaTuner, logits: torch.Tensor, steps: int, start: int = 0) -> int:
    for i in range(start, start + steps):
        tuner.accumulate(logits)
        tuner.maybe_adjust(i + 1)
    return start + steps


def test_p_rises_when_d_overfits_reals():
    pipe = Pipe()
    tuner = AdaTuner(pipe, target=0.6, interval=4, kimg=0.1, batch=8)
    _feed(tuner, torch.full([8, 1], 3.0), 4)  # sign(D(real)) = +1 > 0.6
    assert pipe.p.item() == pytest.approx(8 * 4 / 100)
    assert tuner.last_rt == 1.0


def test_p_falls_when_d_does_not_overfit_and_stays_non_negative():
    pipe = Pipe(0.1)
    tuner = AdaTuner(pipe, target=0.6, interval=4, kimg=0.1, batch=8)
    mixed = torch.tensor([[1.0], [-1.0], [1.0], [-1.0]])  # r_t = 0 < 0.6
    _feed(tuner, mixed, 4)
    assert pipe.p.item() == 0.0  # 0.1 - 0.32, clamped
    _feed(tuner, mixed, 8, start=4)
    assert pipe.p.item() == 0.0


def test_p_moves_only_every_interval_minibatches():
    pipe = Pipe()
    tuner = AdaTuner(pipe, target=0.6, interval=4, kimg=1.0, batch=4)
    _feed(tuner, torch.ones(4, 1), 3)
    assert pipe.p.item() == 0.0
    _feed(tuner, torch.ones(4, 1), 1, start=3)
    assert pipe.p.item() == pytest.approx(4 * 4 / 1000)


def test_signs_not_magnitudes_drive_p():
    pipe = Pipe(0.5)
    tuner = AdaTuner(pipe, target=0.6, interval=1, kimg=1.0, batch=10)
    tuner.accumulate(torch.tensor([[100.0], [-0.1], [-0.1], [-0.1]]))  # mean > 0, r_t = -0.5
    tuner.maybe_adjust(1)
    assert pipe.p.item() < 0.5


def test_accumulator_state_round_trips():
    pipe = Pipe()
    tuner = AdaTuner(pipe, target=0.6, interval=4, kimg=1.0, batch=4)
    _feed(tuner, torch.ones(4, 1), 2)
    other = AdaTuner(Pipe(), target=0.6, interval=4, kimg=1.0, batch=4)
    other.load_state_dict(tuner.state_dict())
    assert torch.equal(other.acc, tuner.acc) and other.acc[1] == 8
