"""Generator / discriminator structure, truncation, gradients and precision handling on CPU."""

import json

import pytest
import torch

from trainer import networks
from trainer.layers import Conv2dLayer, FullyConnected, MinibatchStd
from trainer.networks import Discriminator, Generator, MappingNetwork, channels_for

torch.set_num_threads(1)

TINY = dict(channel_base=256, channel_max=32)


def tiny_g(res=16, img_channels=1, c_dim=0, **kw):
    return Generator(
        z_dim=16, w_dim=16, c_dim=c_dim, img_resolution=res, img_channels=img_channels, **TINY, **kw
    )


def tiny_d(res=16, img_channels=1, c_dim=0, **kw):
    return Discriminator(c_dim=c_dim, img_resolution=res, img_channels=img_channels, **TINY, **kw)


def labels(n, c_dim):
    return torch.eye(c_dim)[torch.arange(n) % c_dim] if c_dim else None


@pytest.mark.parametrize("res,img_channels,c_dim", [(8, 1, 0), (16, 3, 2), (32, 1, 3), (64, 3, 0)])
def test_generator_and_discriminator_output_shapes(res, img_channels, c_dim):
    torch.manual_seed(0)
    G, D = tiny_g(res, img_channels, c_dim), tiny_d(res, img_channels, c_dim)
    z, c = torch.randn(3, 16), labels(3, c_dim)
    img = G(z, c)
    assert img.shape == (3, img_channels, res, res) and img.dtype == torch.float32
    assert torch.isfinite(img).all()
    logits = D(img, c)
    assert logits.shape == (3, 1) and logits.dtype == torch.float32


def test_channels_for_halves_with_resolution_up_to_a_cap():
    assert [channels_for(r, 16384, 512) for r in (4, 32, 64, 256)] == [512, 512, 256, 64]


@pytest.mark.parametrize("res,num_ws", [(4, 2), (8, 4), (32, 8), (256, 14)])
def test_num_ws_counts_every_conv_plus_the_last_toimage(res, num_ws):
    G = Generator(z_dim=8, w_dim=8, img_resolution=res, channel_base=1024, channel_max=4)
    assert G.num_ws == G.synthesis.num_ws == G.mapping.num_ws == num_ws
    assert G.synthesis.block_resolutions[-1] == res


def test_generator_rebuilds_from_init_kwargs():
    G = tiny_g(32, c_dim=3, bf16_min_res=16, conv_clamp=None)
    kwargs = json.loads(json.dumps(G.init_kwargs))
    G2 = Generator(**kwargs)
    shapes = {k: v.shape for k, v in G.state_dict().items()}
    assert shapes == {k: v.shape for k, v in G2.state_dict().items()}
    G2.load_state_dict(G.state_dict())
    z, c = torch.randn(2, 16), labels(2, 3)
    torch.testing.assert_close(G(z, c, noise_mode="const"), G2(z, c, noise_mode="const"))


def test_discriminator_rebuilds_from_init_kwargs():
    D = tiny_d(16, c_dim=2, cmap_dim=8, mbstd_group_size=2)
    D2 = Discriminator(**json.loads(json.dumps(D.init_kwargs)))
    shapes = {k: v.shape for k, v in D.state_dict().items()}
    assert shapes == {k: v.shape for k, v in D2.state_dict().items()}


def test_update_emas_moves_w_avg_toward_batch_mean():
    M = MappingNetwork(z_dim=8, c_dim=0, w_dim=8, num_ws=3, w_avg_beta=0.9)
    z = torch.randn(16, 8)
    ws = M(z, update_emas=True)
    torch.testing.assert_close(M.w_avg, 0.1 * ws[:, 0].mean(dim=0))
    assert ws.shape == (16, 3, 8) and torch.equal(ws[:, 0], ws[:, 2])


def test_mapping_normalises_z():
    M = MappingNetwork(z_dim=8, c_dim=0, w_dim=8, num_ws=2)
    z = torch.randn(4, 8)
    torch.testing.assert_close(M(z), M(z * 5))


def test_truncation_psi_zero_gives_the_w_avg_image_for_all_z():
    torch.manual_seed(1)
    G = tiny_g(16)
    G(torch.randn(32, 16), update_emas=True)  # make w_avg non-trivial
    img = G(torch.randn(4, 16), truncation_psi=0, noise_mode="const")
    w_avg_img = G.synthesis(G.mapping.w_avg.expand(1, G.num_ws, -1), noise_mode="const")
    torch.testing.assert_close(img, w_avg_img.expand(4, -1, -1, -1), rtol=1e-4, atol=1e-5)


def test_truncation_cutoff_leaves_later_ws_alone():
    G = tiny_g(16)
    G.mapping.w_avg.normal_()
    z = torch.randn(3, 16)
    full, cut = G.mapping(z), G.mapping(z, truncation_psi=0.5, truncation_cutoff=2)
    torch.testing.assert_close(cut[:, :2], G.mapping.w_avg.lerp(full[:, :2], 0.5))
    torch.testing.assert_close(cut[:, 2:], full[:, 2:])


def test_train_and_eval_modulation_paths_agree():
    G = tiny_g(16, img_channels=3)
    z = torch.randn(3, 16)
    train_img = G.train()(z, noise_mode="const")  # activation-scaling modulation
    eval_img = G.eval()(z, noise_mode="const")  # grouped-conv modulation
    torch.testing.assert_close(train_img, eval_img, rtol=1e-4, atol=1e-4)


def test_noise_modes():
    G = tiny_g(16)
    for block in G.synthesis.blocks:
        block.conv1.noise_strength.data.fill_(1.0)
    z = torch.randn(2, 16)
    torch.testing.assert_close(G(z, noise_mode="const"), G(z, noise_mode="const"))
    assert not torch.equal(G(z, noise_mode="random"), G(z, noise_mode="random"))
    assert not torch.equal(G(z, noise_mode="none"), G(z, noise_mode="const"))


@pytest.mark.parametrize("c_dim", [0, 3])
def test_gradients_reach_every_parameter(c_dim):
    torch.manual_seed(2)
    G, D = tiny_g(16, c_dim=c_dim), tiny_d(16, c_dim=c_dim)
    z, c = torch.randn(4, 16), labels(4, c_dim)
    loss = D(G(z, c, noise_mode="random"), c).square().mean()
    loss.backward()
    for name, module in (("G", G), ("D", D)):
        for pname, p in module.named_parameters():
            assert p.grad is not None, f"{name}.{pname} got no gradient"
            assert torch.isfinite(p.grad).all(), f"{name}.{pname} has a non-finite gradient"
            assert p.grad.abs().sum() > 0, f"{name}.{pname} has an all-zero gradient"


def test_channels_last_is_accepted():
    G, D = tiny_g(16), tiny_d(16)
    img = torch.randn(4, 1, 16, 16)
    expected = D(img)
    D = D.to(memory_format=torch.channels_last)
    torch.testing.assert_close(D(img.to(memory_format=torch.channels_last)), expected)
    G = G.to(memory_format=torch.channels_last)
    assert G(torch.randn(2, 16)).shape == (2, 1, 16, 16)


@pytest.mark.parametrize("training", [True, False])
def test_bf16_blocks_keep_fp32_outputs(training):
    # On a CPU the bf16 blocks run in bf16 only once allowed (what `train --bf16` does there).
    torch.manual_seed(3)
    G, D = tiny_g(16, bf16_min_res=8), tiny_d(16, bf16_min_res=8)
    G.train(training)
    z = torch.randn(4, 16)
    ref_img = G(z, noise_mode="const")
    ref_logits = D(ref_img)
    networks.allow_cpu_bf16(G)
    networks.allow_cpu_bf16(D)
    img = G(z, noise_mode="const")
    logits = D(img)
    assert img.dtype == logits.dtype == torch.float32
    assert not torch.equal(img, ref_img)  # the reduced-precision path really ran
    assert torch.isfinite(img).all() and torch.isfinite(logits).all()
    assert (img - ref_img).abs().max() < 0.1 * ref_img.abs().max()
    assert (logits - ref_logits).abs().max() < 0.1 * ref_logits.abs().max() + 0.05
    logits.sum().backward()  # the reduced-precision graph must also be differentiable


def test_bf16_blocks_stay_fp32_on_cpu_unless_allowed():
    G = tiny_g(16, bf16_min_res=8)
    blocks = list(G.synthesis.blocks)
    assert [b.use_bf16 for b in blocks] == [False, True, True]  # 4², 8², 16²
    x = torch.zeros(1)
    assert not any(networks.bf16_enabled(b, x) for b in blocks)  # generation, metrics: fp32
    networks.allow_cpu_bf16(G)
    assert [networks.bf16_enabled(b, x) for b in blocks] == [False, True, True]
    networks.allow_cpu_bf16(G, False)
    assert not any(networks.bf16_enabled(b, x) for b in blocks)


def test_conditional_discriminator_depends_on_c():
    D = tiny_d(8, c_dim=3)
    img = torch.randn(3, 1, 8, 8)
    assert not torch.allclose(D(img, labels(3, 3)), D(img, labels(3, 3).roll(1, dims=0)))


@pytest.mark.parametrize("n,group_size,expected_g", [(8, 4, 4), (6, 4, 3), (3, 4, 3), (5, 4, 1)])
def test_minibatch_std_appends_the_std_of_each_group(n, group_size, expected_g):
    x = torch.randn(n, 4, 3, 3)
    out = MinibatchStd(group_size, num_channels=2)(x)
    assert out.shape == (n, 6, 3, 3)
    torch.testing.assert_close(out[:, :4], x)
    for i in range(n):  # groups are runs of `expected_g` consecutive samples
        group = x[(i // expected_g) * expected_g : (i // expected_g + 1) * expected_g]
        std = (group.var(dim=0, unbiased=False) + 1e-8).sqrt()  # [4, 3, 3]
        feats = std.reshape(2, 2, 3, 3).mean(dim=[1, 2, 3])  # one per appended channel
        torch.testing.assert_close(out[i, 4:, 0, 0], feats)
        assert torch.equal(out[i, 4:], out[i, 4:, :1, :1].expand(2, 3, 3))


def test_double_backward_for_r1_and_path_length_penalties():
    torch.manual_seed(4)
    G, D = tiny_g(16), tiny_d(16)
    real = torch.randn(4, 1, 16, 16, requires_grad=True)
    (grad_real,) = torch.autograd.grad(D(real).sum(), real, create_graph=True)
    grad_real.square().sum().backward()  # R1
    assert torch.isfinite(D.blocks[0].fromrgb.weight.grad).all()
    assert D.blocks[0].fromrgb.weight.grad.abs().sum() > 0
    ws = G.mapping(torch.randn(4, 16))
    img = G.synthesis(ws)
    (grad_ws,) = torch.autograd.grad((img * torch.randn_like(img)).sum(), ws, create_graph=True)
    grad_ws.square().sum().backward()  # path length
    weight = G.synthesis.blocks[-1].conv0.conv.weight
    assert weight.grad is not None and weight.grad.abs().sum() > 0


def test_equalized_layers_keep_unit_variance_at_init():
    torch.manual_seed(5)
    fc = FullyConnected(256, 256, lr_multiplier=0.01)
    assert abs(fc(torch.randn(64, 256)).std().item() - 1) < 0.1
    conv = Conv2dLayer(64, 64, 3)
    out = conv(torch.randn(4, 64, 12, 12))[:, :, 1:-1, 1:-1]
    assert abs(out.std().item() - 1) < 0.1
    down = Conv2dLayer(64, 64, 3, down=2)
    assert down(torch.randn(4, 64, 12, 12)).shape == (4, 64, 6, 6)


def test_conv_clamp_limits_every_layer_in_fp32_as_the_reference():
    from trainer.layers import SynthesisLayer, ToImage

    torch.manual_seed(5)
    G, D = tiny_g(16, conv_clamp=0.05), tiny_d(16, conv_clamp=0.05)
    seen = []

    def hook(module, args, out):
        seen.append((type(module).__name__, out.abs().max().item()))

    for m in [*G.modules(), *D.modules()]:
        if isinstance(m, SynthesisLayer | ToImage | Conv2dLayer) and m.conv_clamp is not None:
            m.register_forward_hook(hook)
    D(G(torch.randn(4, 16)))
    names = {n for n, _ in seen}
    assert names == {"SynthesisLayer", "ToImage", "Conv2dLayer"}
    assert D.epilogue.conv.conv_clamp == 0.05  # the epilogue conv clamps too
    assert max(v for _, v in seen) <= 0.05 + 1e-7


def test_conditional_discriminator_embeds_labels_with_eight_layers_by_default():
    assert len(tiny_d(8, c_dim=2).mapping.layers) == 8
    assert len(tiny_d(8, c_dim=2, mapping_layers=2).mapping.layers) == 2


def test_old_discriminator_snapshots_keep_their_two_layer_embedding():
    from trainer.snapshot import build_network, module_state

    D = tiny_d(8, c_dim=2, mapping_layers=2)
    entry = module_state(D)
    entry["init_kwargs"].pop("mapping_layers")  # as written before it was configurable
    assert len(build_network(entry, "D").mapping.layers) == 2
