"""Custom ops against slow, obvious references (explicit zero insertion and tap-by-tap sums)."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from trainer import ops

torch.set_num_threads(1)


def upfirdn2d_reference(x, f, up=1, down=1, padding=(0, 0, 0, 0), gain=1.0):
    """Numpy: insert zeros, pad/crop, true convolution tap by tap, keep every `down`-th."""
    x, f = np.asarray(x, dtype=np.float64), np.asarray(f, dtype=np.float64) * gain
    n, c, h, w = x.shape
    u = np.zeros((n, c, h * up, w * up))
    u[:, :, ::up, ::up] = x
    x0, x1, y0, y1 = padding
    u = np.pad(u, ((0, 0), (0, 0), (max(y0, 0), max(y1, 0)), (max(x0, 0), max(x1, 0))))
    u = u[:, :, max(-y0, 0) : u.shape[2] - max(-y1, 0), max(-x0, 0) : u.shape[3] - max(-x1, 0)]
    fh, fw = f.shape
    oh, ow = u.shape[2] - fh + 1, u.shape[3] - fw + 1
    out = np.zeros((n, c, oh, ow))
    for oy in range(oh):
        for ox in range(ow):
            for i in range(fh):
                for j in range(fw):  # out[o] = sum_k f[k] u[o + K - 1 - k]
                    out[:, :, oy, ox] += f[i, j] * u[:, :, oy + fh - 1 - i, ox + fw - 1 - j]
    return out[:, :, ::down, ::down]


def modulated_weight_reference(weight, style, demodulate):
    """One sample's weight: scale input channels by the style, then unit-norm each output."""
    w = weight * style[None, :, None, None]  # [O, I, k, k]
    if demodulate:
        w = w / torch.sqrt(w.square().sum(dim=[1, 2, 3], keepdim=True) + 1e-8)
    return w


def zero_insert(x, up=2):
    n, c, h, w = x.shape
    u = x.new_zeros(n, c, h * up, w * up)
    u[:, :, ::up, ::up] = x
    return u


@pytest.mark.parametrize(
    "up,down,padding,fshape",
    [
        (1, 1, (0, 0, 0, 0), (3, 3)),
        (2, 1, (2, 1, 2, 1), (4, 4)),
        (1, 2, (1, 1, 1, 1), (4, 4)),
        (3, 1, (1, 2, 0, 3), (3, 2)),
        (1, 3, (2, 0, 1, 1), (2, 5)),
        (2, 2, (-1, 3, 2, -1), (4, 3)),
    ],
)
def test_upfirdn2d_matches_direct_reference(up, down, padding, fshape):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 7, 6, generator=g, dtype=torch.float64)
    f = torch.rand(*fshape, generator=g, dtype=torch.float64)  # asymmetric: catches flips
    out = ops.upfirdn2d(x, f, up=up, down=down, padding=padding, gain=1.5)
    ref = upfirdn2d_reference(x.numpy(), f.numpy(), up, down, padding, gain=1.5)
    assert out.shape == ref.shape
    np.testing.assert_allclose(out.numpy(), ref, atol=1e-10)


def test_setup_filter_is_normalised_outer_product():
    f = ops.setup_filter([1, 3, 3, 1])
    assert f.shape == (4, 4)
    assert torch.allclose(f.sum(), torch.tensor(1.0))
    assert torch.allclose(
        f, torch.outer(torch.tensor([1, 3, 3, 1.0]), torch.tensor([1, 3, 3, 1.0])) / 64
    )


def test_upsample2d_is_bilinear_interpolation_inside_the_image():
    # [1,3,3,1] upsampling puts each output at 3/4 of its nearer input and 1/4 of the other.
    x = torch.randn(2, 3, 8, 8, dtype=torch.float64)
    out = ops.upsample2d(x, ops.setup_filter().double())
    assert out.shape == (2, 3, 16, 16)
    ref = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
    torch.testing.assert_close(out[:, :, 1:-1, 1:-1], ref[:, :, 1:-1, 1:-1])
    full = upfirdn2d_reference(
        x.numpy(), np.outer([1, 3, 3, 1], [1, 3, 3, 1]) / 16, up=2, padding=(2, 1, 2, 1)
    )
    np.testing.assert_allclose(out.numpy(), full, atol=1e-10)


def test_downsample2d_averages_a_centred_footprint():
    x = torch.randn(2, 3, 8, 8, dtype=torch.float64)
    out = ops.downsample2d(x, ops.setup_filter().double())
    assert out.shape == (2, 3, 4, 4)
    # 1D: out[o] = (x[2o-1] + 3 x[2o] + 3 x[2o+1] + x[2o+2]) / 8, zero outside the image.
    taps = torch.tensor([1, 3, 3, 1], dtype=torch.float64) / 8
    xp = F.pad(x, [1, 1, 1, 1])
    ref = torch.zeros_like(out)
    for oy in range(4):
        for ox in range(4):
            patch = xp[:, :, 2 * oy : 2 * oy + 4, 2 * ox : 2 * ox + 4]
            ref[:, :, oy, ox] = (patch * torch.outer(taps, taps)).sum(dim=[2, 3])
    torch.testing.assert_close(out, ref)


def test_resampling_keeps_constant_images_constant_away_from_borders():
    x = torch.ones(1, 1, 8, 8)
    f = ops.setup_filter()
    torch.testing.assert_close(ops.upsample2d(x, f)[..., 2:-2, 2:-2], torch.ones(1, 1, 12, 12))
    torch.testing.assert_close(ops.downsample2d(x, f)[..., 1:-1, 1:-1], torch.ones(1, 1, 2, 2))


@pytest.mark.parametrize("demodulate", [True, False])
@pytest.mark.parametrize("fused", [True, False])
def test_modulated_conv2d_matches_direct_reference(demodulate, fused):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(3, 5, 6, 6, generator=g, dtype=torch.float64)
    weight = torch.randn(4, 5, 3, 3, generator=g, dtype=torch.float64)
    styles = torch.randn(3, 5, generator=g, dtype=torch.float64)
    out = ops.modulated_conv2d(x, weight, styles, demodulate=demodulate, padding=1, fused=fused)
    ref = torch.cat(
        [
            F.conv2d(
                x[n : n + 1], modulated_weight_reference(weight, styles[n], demodulate), padding=1
            )
            for n in range(3)
        ]
    )
    torch.testing.assert_close(out, ref)


@pytest.mark.parametrize("fused", [True, False])
def test_modulated_conv2d_up2_matches_zero_insertion_reference(fused):
    g = torch.Generator().manual_seed(2)
    x = torch.randn(2, 3, 5, 5, generator=g, dtype=torch.float64)
    weight = torch.randn(4, 3, 3, 3, generator=g, dtype=torch.float64)
    styles = torch.randn(2, 3, generator=g, dtype=torch.float64) + 1
    f = ops.setup_filter().double()
    out = ops.modulated_conv2d(x, weight, styles, up=2, padding=1, resample_filter=f, fused=fused)
    assert out.shape == (2, 4, 10, 10)
    for n in range(2):
        w = modulated_weight_reference(weight, styles[n], True)
        # t[m] = sum_k w[k] u[m + k - 1] on the zero-inserted grid, kept beyond the border;
        # out[o] = 4 * sum_j f[j] t[o + 1 - j] (2x interpolation by the FIR filter).
        t = F.conv2d(F.pad(zero_insert(x[n : n + 1]), [3, 3, 3, 3]), w)  # t[m] = t_ext[m + 2]
        ref = torch.zeros(1, 4, 10, 10, dtype=torch.float64)
        for jy in range(4):
            for jx in range(4):
                ref += 4 * f[jy, jx] * t[:, :, 3 - jy : 13 - jy, 3 - jx : 13 - jx]
        torch.testing.assert_close(out[n : n + 1], ref)


@pytest.mark.parametrize("kernel", [1, 3])
def test_conv2d_resample_down2_is_blur_then_strided_conv(kernel):
    g = torch.Generator().manual_seed(3)
    x = torch.randn(2, 3, 8, 8, generator=g, dtype=torch.float64)
    weight = torch.randn(4, 3, kernel, kernel, generator=g, dtype=torch.float64)
    f = ops.setup_filter().double()
    out = ops.conv2d_resample(x, weight, f, down=2)
    assert out.shape == (2, 4, 4, 4)
    # b[m] = sum_j f[j] x[m + 1 - j] sits at pixel m - 1/2; output o sits at 2o + 1/2.
    xp = F.pad(x, [3, 3, 3, 3])  # x[i] = xp[i + 3]
    b = sum(
        f[jy, jx] * xp[:, :, 4 - jy : 14 - jy, 4 - jx : 14 - jx]
        for jy in range(4)
        for jx in range(4)
    )  # b[m] for m = 0..9
    # out[o] = sum_k w[k] b[2o + 1 + k - kernel // 2]: centred on b[2o + 1], i.e. pixel 2o + 1/2.
    k0 = 1 - kernel // 2
    ref = F.conv2d(b[:, :, k0:, k0:], weight, stride=2)[:, :, :4, :4]
    torch.testing.assert_close(out, ref)


def test_demodulation_gives_unit_variance_outputs():
    g = torch.Generator().manual_seed(4)
    x = torch.randn(8, 64, 16, 16, generator=g)
    weight = torch.randn(32, 64, 3, 3, generator=g)
    styles = torch.exp(torch.randn(8, 64, generator=g))  # very uneven styles
    out = ops.modulated_conv2d(x, weight, styles, padding=1)
    interior = out[:, :, 1:-1, 1:-1]
    std_per_channel = interior.std(dim=[2, 3])  # [N, O]
    assert abs(interior.std().item() - 1) < 0.05
    assert std_per_channel.min() > 0.75 and std_per_channel.max() < 1.25


def test_bias_act_lrelu_has_gain_sqrt2_and_clamps():
    x = torch.tensor([[-2.0, 1.0, 300.0]]).reshape(1, 3, 1, 1)
    out = ops.bias_act(x, torch.zeros(3), "lrelu", clamp=256).flatten()
    s = 2**0.5
    torch.testing.assert_close(out, torch.tensor([-0.4 * s, 1.0 * s, 256.0]))


def test_normalize_2nd_moment_gives_unit_rms():
    z = torch.randn(4, 16) * 7
    assert torch.allclose(ops.normalize_2nd_moment(z).square().mean(dim=1), torch.ones(4))


@pytest.mark.parametrize(
    "up,down,padding", [(1, 2, (1, 1, 1, 1)), (2, 1, (2, 1, 2, 1)), (1, 1, (2, 1, 1, 2)),
                        (2, 1, (-1, 0, -1, 0)), (1, 2, (2, 2, 2, 2))]
)  # fmt: skip
def test_separable_fir_as_matrix_products_equals_the_convolution(up, down, padding):
    torch.manual_seed(0)
    f = ops.setup_filter([1, 3, 3, 1])
    x = torch.randn(2, 3, 9, 9, requires_grad=True)
    outs = []
    for separable in (False, True):
        y = ops.upfirdn2d(x, f, up, down, padding, gain=up * up, separable=separable)
        (g,) = torch.autograd.grad(y.square().sum(), x, create_graph=True)
        (gg,) = torch.autograd.grad(g.square().sum(), x)
        outs.append((y, g, gg))
    for a, b in zip(*outs, strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def test_a_1x1_downsampling_conv_decimates_in_the_filter_with_the_same_result():
    torch.manual_seed(0)
    x, w = torch.randn(2, 6, 16, 16), torch.randn(5, 6, 1, 1)
    f = ops.setup_filter([1, 3, 3, 1])
    blurred = ops.upfirdn2d(x, f, padding=(1, 1, 1, 1), separable=True)
    expected = F.conv2d(blurred, w, stride=2)  # blur, then strided 1x1 conv
    out = ops.conv2d_resample(x, w, f, down=2)
    assert out.shape == (2, 5, 8, 8) and out.is_contiguous()
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)
