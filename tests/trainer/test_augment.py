"""ADA AugmentPipe: identity at p=0, every transform on its own, exact integer geometry, grads."""

import json

import pytest
import torch
import torch.nn.functional as F

from trainer.augment import MULTIPLIERS, AugmentPipe, augpipe_kwargs, band_filters

torch.set_num_threads(1)

TRANSFORMS = list(MULTIPLIERS)
COLOUR_ONLY = ("hue", "saturation")  # no effect on one channel


def only(name: str, p: float = 1.0) -> AugmentPipe:
    pipe = AugmentPipe(**{t: int(t == name) for t in TRANSFORMS})
    pipe.p.copy_(torch.as_tensor(p))
    return pipe


def smooth_images(n=8, c=1, size=32, seed=0):
    """Images in [-1, 1] with natural-looking low-frequency content."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, c, size // 4, size // 4, generator=g)
    x = F.interpolate(x, size=(size, size), mode="bicubic", align_corners=False)
    return x.clamp(-1, 1)


def test_p_zero_is_exactly_the_identity():
    x = smooth_images()
    pipe = AugmentPipe()
    assert pipe.p.ndim == 0 and float(pipe.p) == 0
    out = pipe(x)
    assert torch.equal(out, x)


def test_p_one_changes_images_but_not_shape_or_dtype():
    x = smooth_images(c=3)
    pipe = AugmentPipe()
    pipe.p.copy_(torch.as_tensor(1.0))
    out = pipe(x)
    assert out.shape == x.shape and out.dtype == x.dtype
    assert not torch.allclose(out, x)


@pytest.mark.parametrize("name", TRANSFORMS)
def test_each_transform_can_be_enabled_alone(name):
    x = smooth_images(n=16, c=3 if name in COLOUR_ONLY else 1)
    torch.manual_seed(0)
    out = only(name)(x)
    assert out.shape == x.shape and torch.isfinite(out).all()
    changed = (out - x).abs().amax(dim=[1, 2, 3]) > 1e-5
    assert changed.any(), f"{name} at p=1 changed nothing"


def test_xflip_mirrors_or_keeps_each_image_exactly():
    x = smooth_images(n=16)
    out = only("xflip")(x)
    for a, b in zip(out, x, strict=True):
        assert torch.allclose(a, b.flip(-1), atol=1e-5) or torch.allclose(a, b, atol=1e-5)


def test_rotate90_gives_exact_quarter_turns():
    x = smooth_images(n=16)
    out = only("rotate90")(x)
    for a, b in zip(out, x, strict=True):
        assert any(torch.allclose(a, torch.rot90(b, k, [1, 2]), atol=1e-5) for k in range(4))


def test_xint_shifts_by_whole_pixels():
    x = smooth_images(n=16)
    out = only("xint")(x)
    for a, b in zip(out, x, strict=True):  # interior matches some integer shift of the input
        shifts = [(dy, dx) for dy in range(-4, 5) for dx in range(-4, 5)]
        assert any(
            torch.allclose(a[:, 4:-4, 4:-4], b.roll((dy, dx), (1, 2))[:, 4:-4, 4:-4], atol=1e-5)
            for dy, dx in shifts
        )


def test_unselected_samples_are_untouched():
    x = smooth_images(n=64)
    torch.manual_seed(1)
    pipe = AugmentPipe(**augpipe_kwargs("bgcfnc"))
    pipe.p.copy_(torch.as_tensor(0.05))
    out = pipe(x)
    same = (out == x).flatten(1).all(dim=1)
    assert same.any() and not same.all()


def test_same_rng_state_reproduces_the_augmentation():
    x = smooth_images()
    pipe = AugmentPipe()
    pipe.p.copy_(torch.as_tensor(0.7))
    state = torch.get_rng_state()
    first = pipe(x)
    torch.set_rng_state(state)
    torch.testing.assert_close(pipe(x), first, rtol=0, atol=0)


def test_gradient_flows_to_the_images():
    x = smooth_images().requires_grad_(True)
    pipe = AugmentPipe()
    pipe.p.copy_(torch.as_tensor(1.0))
    pipe(x).square().sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def test_distribution_stays_roughly_the_same_at_half_strength():
    x = smooth_images(n=64, seed=2)
    torch.manual_seed(2)
    pipe = AugmentPipe()
    pipe.p.copy_(torch.as_tensor(0.5))
    out = pipe(x)
    assert abs(out.mean() - x.mean()) < 0.15
    assert 0.6 < out.std() / x.std() < 1.5


def test_band_filters_sum_to_an_impulse():
    bands = band_filters()
    impulse = torch.zeros_like(bands[0])
    impulse[7, 7] = 1
    torch.testing.assert_close(bands.sum(dim=0), impulse)
    torch.testing.assert_close(bands.sum(dim=[1, 2]), torch.tensor([1.0, 0, 0, 0]))


def test_init_kwargs_rebuild_the_pipe():
    pipe = AugmentPipe(noise=0, cutout_size=0.25)
    rebuilt = AugmentPipe(**json.loads(json.dumps(pipe.init_kwargs)))
    assert rebuilt.init_kwargs == pipe.init_kwargs and rebuilt.cutout_size == 0.25


def test_double_backward_through_the_pipe_for_r1():
    # R1 differentiates D(augment(x)) w.r.t. x, then that gradient w.r.t. D's weights.
    torch.manual_seed(3)
    weight = torch.randn(1, 1, 3, 3, requires_grad=True)  # stands in for D
    x = smooth_images().requires_grad_(True)
    pipe = AugmentPipe()
    pipe.p.copy_(torch.as_tensor(1.0))
    logits = F.conv2d(pipe(x), weight).tanh().sum()
    (grad_x,) = torch.autograd.grad(logits, x, create_graph=True)
    grad_x.square().sum().backward()
    assert weight.grad is not None and torch.isfinite(weight.grad).all()
    assert weight.grad.abs().sum() > 0
