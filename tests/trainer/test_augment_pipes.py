"""Named pipes (default bgc), colour on one channel, mask channels, and no host syncs."""

import contextlib

import pytest
import torch
import torch.nn.functional as F

from trainer.augment import AUGPIPES, MULTIPLIERS, AugmentPipe, augpipe_kwargs

torch.set_num_threads(1)


def smooth(n=8, c=1, size=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, c, size // 4, size // 4, generator=g)
    return F.interpolate(x, size=(size, size), mode="bicubic", align_corners=False).clamp(-1, 1)


def pipe(name="bgc", p=1.0, **kw):
    aug = AugmentPipe(**{**augpipe_kwargs(name), **kw})
    aug.p.fill_(p)
    return aug


def test_the_papers_pipes_are_all_named_and_bgc_is_the_default():
    assert set(AUGPIPES) == {
        *"blit geom color filter noise cutout bg bgc bgcf bgcfn bgcfnc".split()
    }
    bgc = augpipe_kwargs("bgc")
    on = {t for t, v in bgc.items() if v}
    assert on == set(AUGPIPES["blit"] + AUGPIPES["geom"] + AUGPIPES["color"])
    default = AugmentPipe().init_kwargs
    assert {t: default[t] for t in MULTIPLIERS} == bgc
    assert set(augpipe_kwargs("bgcfnc").values()) == {1}
    with pytest.raises(ValueError, match="unknown augpipe 'bgx'"):
        augpipe_kwargs("bgx")


def test_gray_colour_is_brightness_contrast_and_inversion():
    x = smooth(n=64)
    torch.manual_seed(0)
    out = pipe("color", lumaflip=1, brightness=0, contrast=0)(x)
    for a, b in zip(out, x, strict=True):  # luma flip alone: x or -x (about mid-grey 0)
        assert torch.equal(a, b) or torch.allclose(a, -b, atol=1e-6)
    torch.manual_seed(1)
    out = pipe("color", lumaflip=0)(x)
    for a, b in zip(out, x, strict=True):  # an affine map a*x + b of each image
        basis = torch.stack([b.flatten(), torch.ones(b.numel())], dim=1)
        fit = basis @ torch.linalg.lstsq(basis, a.flatten()[:, None]).solution
        torch.testing.assert_close(fit[:, 0], a.flatten(), atol=1e-5, rtol=0)


def test_hue_and_saturation_leave_gray_images_alone_and_act_on_rgb():
    torch.manual_seed(2)
    x = smooth(n=16)
    assert torch.equal(pipe("color", brightness=0, contrast=0, lumaflip=0)(x), x)
    rgb = smooth(n=16, c=3)
    out = pipe("color", brightness=0, contrast=0, lumaflip=0)(rgb)
    assert not torch.allclose(out, rgb)
    torch.testing.assert_close(out.mean(dim=1), rgb.mean(dim=1), atol=1e-5, rtol=0)  # luma kept


@pytest.mark.parametrize("name", ["bg", "filter"])
def test_mask_channels_take_the_same_geometry_and_filter_as_the_image(name):
    torch.manual_seed(3)
    img = smooth(n=16)
    out = pipe(name, image_channels=1)(torch.cat([img, img], dim=1))
    assert not torch.allclose(out[:, :1], img)
    torch.testing.assert_close(out[:, :1], out[:, 1:], atol=1e-6, rtol=0)


def test_mask_channels_take_no_colour_noise_or_cutout():
    torch.manual_seed(4)
    img, mask = smooth(n=32), torch.ones(32, 1, 16, 16)  # a constant mask survives geometry
    out = pipe("bgcfnc", imgfilter=0, image_channels=1)(torch.cat([img, mask], dim=1))
    torch.testing.assert_close(out[:, 1:], mask, atol=1e-3, rtol=0)
    same = pipe("bgcfnc", imgfilter=0, image_channels=2)
    torch.manual_seed(4)
    assert not torch.allclose(same(torch.cat([img, mask], dim=1))[:, 1:], mask, atol=1e-2)


class HostSync(AssertionError):
    pass


@contextlib.contextmanager
def no_host_reads():
    """Fail on anything that reads a tensor's value into Python (a host sync on a GPU)."""
    names = ["__bool__", "__float__", "__int__", "__index__", "item", "tolist", "numpy"]
    saved = {n: getattr(torch.Tensor, n) for n in names}

    def refuse(*args, **kwargs):
        raise HostSync("tensor value read on the host")

    try:
        for n in names:
            setattr(torch.Tensor, n, refuse)
        yield
    finally:
        for n, f in saved.items():
            setattr(torch.Tensor, n, f)


@pytest.mark.parametrize("p", [0.0, 0.3, 1.0])
def test_the_pipe_never_reads_tensors_on_the_host(p):
    aug = pipe("bgcfnc", p=p)
    x = smooth(c=3).requires_grad_(True)
    with no_host_reads():
        out = aug(x)
        out.square().sum().backward()
    assert x.grad is not None


def test_the_guard_catches_a_host_read():
    with no_host_reads(), pytest.raises(HostSync):
        if torch.ones([]) > 0:
            pass


def test_augpipe_flag_defaults_to_bgc_and_is_saved_in_options_json(tiny_run):
    import json
    import os

    from trainer.options import _augment_config
    from trainer.parser import build_parser

    def parsed(*flags):
        return _augment_config(build_parser().parse_args(["train", "--outdir", "x", *flags]))

    assert parsed().pipe == "bgc" and parsed("--augpipe", "bgcfnc").pipe == "bgcfnc"
    assert parsed("--augpipe", "bg", "--p", "0.3").pipe == "bg"
    with pytest.raises(SystemExit):
        parsed("--augpipe", "bgx")
    with open(os.path.join(tiny_run, "options.json")) as f:
        assert json.load(f)["augment"]["pipe"] == "bgc"
