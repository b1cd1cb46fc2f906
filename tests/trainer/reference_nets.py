"""A slow, obvious float64 StyleGAN2 (G synthesis and residual D) on the reference's tensor
names, written from the paper and the reference's documented semantics, not from our modules:
weights scaled before each convolution, FIR resampling by explicit zero insertion and a 2D
true convolution, modulation per sample on the weight, bias then activation then gain then
clamp. Used as the target for our networks' gradients (tests/trainer/test_reference_gradients).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

SQRT2, SLOPE = math.sqrt(2.0), 0.2


@dataclass
class Config:
    res: int
    img_channels: int
    c_dim: int
    channel_base: int
    channel_max: int
    z_dim: int = 64
    w_dim: int = 64
    mapping_layers: int = 2
    conv_clamp: float = 256.0

    def ch(self, res: int) -> int:
        return min(self.channel_base // res, self.channel_max)

    def g_resolutions(self) -> list[int]:
        return [2**i for i in range(2, int(math.log2(self.res)) + 1)]

    def generator_kwargs(self) -> dict:
        return dict(z_dim=self.z_dim, c_dim=self.c_dim, w_dim=self.w_dim, img_resolution=self.res,
                    img_channels=self.img_channels, mapping_layers=self.mapping_layers,
                    channel_base=self.channel_base, channel_max=self.channel_max,
                    conv_clamp=self.conv_clamp)  # fmt: skip

    def discriminator_kwargs(self) -> dict:
        return dict(c_dim=self.c_dim, img_resolution=self.res, img_channels=self.img_channels,
                    channel_base=self.channel_base, channel_max=self.channel_max,
                    conv_clamp=self.conv_clamp, mapping_layers=self.mapping_layers)  # fmt: skip


FIR = torch.outer(torch.tensor([1.0, 3, 3, 1]), torch.tensor([1.0, 3, 3, 1])) / 64


def random_params(cfg: Config, seed: int) -> dict[str, dict[str, torch.Tensor]]:
    """Reference-named float64 tensors of G (mapping + synthesis) and D, all moved off their
    initial values so that a dropped or misplaced tensor shows."""
    gen = torch.Generator().manual_seed(seed)

    def rnd(*shape, scale=1.0, mean=0.0):
        return torch.randn(list(shape), generator=gen, dtype=torch.float64) * scale + mean

    G, D = {}, {}

    def fc(p, prefix, i, o, lr=1.0, bias_mean=0.0):
        p[prefix + ".weight"] = rnd(o, i) / lr
        p[prefix + ".bias"] = rnd(o, scale=0.1, mean=bias_mean) / lr

    def mapping(p, z_dim, w_dim, num_ws):
        if cfg.c_dim:
            fc(p, "mapping.embed", cfg.c_dim, w_dim)
        dims = [z_dim + (w_dim if cfg.c_dim else 0)] + [w_dim] * cfg.mapping_layers
        for i in range(cfg.mapping_layers):
            fc(p, f"mapping.fc{i}", dims[i], dims[i + 1], lr=0.01)
        if num_ws:
            p["mapping.w_avg"] = rnd(w_dim, scale=0.1)

    mapping(G, cfg.z_dim, cfg.w_dim, True)
    for res in cfg.g_resolutions():
        b, out = f"synthesis.b{res}.", cfg.ch(res)
        G[b + "resample_filter"] = FIR.clone()
        convs = [("conv1", out)] if res == 4 else [("conv0", cfg.ch(res // 2)), ("conv1", out)]
        if res == 4:
            G[b + "const"] = rnd(out, 4, 4)
        for name, cin in convs:
            fc(G, b + name + ".affine", cfg.w_dim, cin, bias_mean=1.0)
            G[b + name + ".weight"] = rnd(out, cin, 3, 3)
            G[b + name + ".noise_strength"] = rnd(scale=0.1)
            G[b + name + ".bias"] = rnd(out, scale=0.1)
            G[b + name + ".noise_const"] = rnd(res, res)
            G[b + name + ".resample_filter"] = FIR.clone()
        fc(G, b + "torgb.affine", cfg.w_dim, out, bias_mean=1.0)
        G[b + "torgb.weight"] = rnd(cfg.img_channels, out, 1, 1)
        G[b + "torgb.bias"] = rnd(cfg.img_channels, scale=0.1)

    for res in cfg.g_resolutions()[:0:-1]:  # R .. 8
        b, tmp = f"b{res}.", cfg.ch(res)
        D[b + "resample_filter"] = FIR.clone()
        if res == cfg.res:
            D[b + "fromrgb.weight"] = rnd(tmp, cfg.img_channels, 1, 1)
            D[b + "fromrgb.bias"] = rnd(tmp, scale=0.1)
            D[b + "fromrgb.resample_filter"] = FIR.clone()
        for name, o in (("conv0", tmp), ("conv1", cfg.ch(res // 2))):
            D[b + name + ".weight"] = rnd(o, tmp, 3, 3)
            D[b + name + ".bias"] = rnd(o, scale=0.1)
            D[b + name + ".resample_filter"] = FIR.clone()
        D[b + "skip.weight"] = rnd(cfg.ch(res // 2), tmp, 1, 1)
        D[b + "skip.resample_filter"] = FIR.clone()
    c4, cmap = cfg.ch(4), cfg.ch(4) if cfg.c_dim else 0
    if cfg.c_dim:
        mapping(D, 0, cmap, False)
    D["b4.conv.weight"] = rnd(c4, c4 + 1, 3, 3)
    D["b4.conv.bias"] = rnd(c4, scale=0.1)
    D["b4.conv.resample_filter"] = FIR.clone()
    fc(D, "b4.fc", c4 * 16, c4)
    fc(D, "b4.out", c4, cmap or 1)
    return {"G": G, "D": D}


def bias_act(x, b, act, gain=1.0, clamp=None):
    x = x + b.reshape(1, -1, *([1] * (x.ndim - 2)))
    if act == "lrelu":
        x = torch.where(x >= 0, x, x * SLOPE)
        gain = gain * SQRT2
    x = x * gain
    return x if clamp is None else x.clamp(-clamp, clamp)


def dense(p, name, x, act="linear", lr=1.0):
    w = p[name + ".weight"] * (lr / math.sqrt(p[name + ".weight"].shape[1]))
    return bias_act(x @ w.t(), p[name + ".bias"] * lr, act)


def upfirdn(x, up=1, down=1, pad=(0, 0), gain=1.0):
    """Zero insertion (up - 1 zeros after each sample), padding, true 2D convolution with the
    [1, 3, 3, 1] filter times gain, then every `down`-th sample."""
    n, c, h, w = x.shape
    u = x.new_zeros([n, c, h * up, w * up])
    u[:, :, ::up, ::up] = x
    u = F.pad(u, [pad[0], pad[1], pad[0], pad[1]])
    k = (FIR * gain).to(x).flip([0, 1])[None, None].repeat(c, 1, 1, 1)
    return F.conv2d(u, k, groups=c)[:, :, ::down, ::down]


def conv(x, w, up=1, down=1):
    """A 'same' convolution (correlation) with 3x3 or 1x1 `w`; up: the reference's transposed
    convolution (zero insertion, then true convolution with w), then FIR; down: FIR, then a
    strided convolution."""
    k = w.shape[-1]
    if up == 2:
        n, c, h, wd = x.shape
        u = x.new_zeros([n, c, 2 * h - 1, 2 * wd - 1])
        u[:, :, ::2, ::2] = x
        u = F.conv2d(F.pad(u, [k - 1] * 4), w.flip([2, 3]))  # [2h + 1] full convolution
        return upfirdn(u, pad=(1, 1), gain=4)
    if down == 2 and k == 1:
        return F.conv2d(upfirdn(x, down=2, pad=(1, 1)), w)
    if down == 2:
        return F.conv2d(upfirdn(x, pad=(2, 2)), w, stride=2)
    return F.conv2d(x, w, padding=k // 2)


def conv_layer(p, name, x, act="lrelu", gain=1.0, clamp=None, down=1):
    w = p[name + ".weight"]
    w = w / math.sqrt(w[0].numel())
    x = conv(x, w, down=down)
    b = p.get(name + ".bias", torch.zeros(w.shape[0], dtype=x.dtype))
    return bias_act(x, b, act, gain, None if clamp is None else clamp * gain)


def modulated(p, name, x, wlat, demodulate, up=1, noise=None):
    """Each sample convolves with weight * style (then unit-norm per output if demodulating)."""
    weight = p[name + ".weight"]
    styles = dense(p, name + ".affine", wlat)
    if not demodulate:
        styles = styles / math.sqrt(weight[0].numel())
    out = []
    for i in range(x.shape[0]):
        wi = weight * styles[i][None, :, None, None]
        if demodulate:
            wi = wi / (wi.square().sum(dim=[1, 2, 3], keepdim=True) + 1e-8).sqrt()
        out.append(conv(x[i : i + 1], wi, up=up))
    y = torch.cat(out)
    return y if noise is None else y + noise


def synthesis(p, cfg: Config, ws, noise=None):
    """ws [N, num_ws, w_dim] -> image; `noise(res)` gives each layer's [N, 1, res, res] noise
    (in layer order), else each layer's constant noise."""
    x = img = None
    wi = 0
    for res in cfg.g_resolutions():
        b = f"synthesis.b{res}."
        if res == 4:
            x = p[b + "const"][None].repeat(ws.shape[0], 1, 1, 1)
        names = ["conv1"] if res == 4 else ["conv0", "conv1"]
        for j, name in enumerate(names):
            n = p[b + name + ".noise_const"] if noise is None else noise(res)
            up = 2 if name == "conv0" else 1
            x = modulated(
                p, b + name, x, ws[:, wi + j], True, up, n * p[b + name + ".noise_strength"]
            )
            x = bias_act(x, p[b + name + ".bias"], "lrelu", clamp=cfg.conv_clamp)
        y = modulated(p, b + "torgb", x, ws[:, wi + len(names)], False)
        y = bias_act(y, p[b + "torgb.bias"], "linear", clamp=cfg.conv_clamp)
        img = y if img is None else upfirdn(img, up=2, pad=(2, 1), gain=4) + y
        wi += len(names)
    return img


def mapping(p, cfg: Config, z, c=None, num_ws=None):
    """G's mapping: z (and embedded c), each scaled to unit RMS, through the lrelu layers;
    broadcast to `num_ws` copies."""
    parts = [z / (z.square().mean(dim=1, keepdim=True) + 1e-8).sqrt()]
    if cfg.c_dim:
        e = dense(p, "mapping.embed", c)
        parts.append(e / (e.square().mean(dim=1, keepdim=True) + 1e-8).sqrt())
    x = torch.cat(parts, dim=1)
    for i in range(cfg.mapping_layers):
        x = dense(p, f"mapping.fc{i}", x, "lrelu", lr=0.01)
    return x if num_ws is None else x[:, None].repeat(1, num_ws, 1)


def discriminator(p, cfg: Config, img, c=None):
    """Residual D: logits [N, 1]; minibatch std over the whole batch of 4."""
    x, clamp, half = None, cfg.conv_clamp, math.sqrt(0.5)
    for res in cfg.g_resolutions()[:0:-1]:
        b = f"b{res}."
        if x is None:
            x = conv_layer(p, b + "fromrgb", img, clamp=clamp)
        y = conv_layer(p, b + "skip", x, act="linear", gain=half, down=2)
        x = conv_layer(p, b + "conv0", x, clamp=clamp)
        x = y + conv_layer(p, b + "conv1", x, gain=half, clamp=clamp, down=2)
    std = (x.var(dim=0, unbiased=False) + 1e-8).sqrt().mean()  # one group: all 4 samples
    x = torch.cat([x, std.expand(x.shape[0], 1, 4, 4)], dim=1)
    x = conv_layer(p, "b4.conv", x, clamp=clamp)
    x = dense(p, "b4.out", dense(p, "b4.fc", x.flatten(1), "lrelu"))
    if not cfg.c_dim:
        return x
    e = dense(p, "mapping.embed", c)
    e = e / (e.square().mean(dim=1, keepdim=True) + 1e-8).sqrt()
    for i in range(cfg.mapping_layers):
        e = dense(p, f"mapping.fc{i}", e, "lrelu", lr=0.01)
    return (x * e).sum(dim=1, keepdim=True) / math.sqrt(e.shape[1])
