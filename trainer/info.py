"""`python -m trainer info ...`: what the trainer would do, as one JSON line, for the web app.

The app used to re-derive these (auto batch and gamma, a snapshot's network from options.json,
which options a resume may change); asking the trainer keeps one source of truth.

  info defaults --res N [--gpus W] [--batch B] [--cfg auto|paper]
        the options a fresh run at N² would use, the limits the trainer accepts, and the
        network's multiply-accumulates per image (for a duration estimate)
  info snapshot FILE      a snapshot's progress, networks, options and dataset facts
  info resume-options     the options `train --resume latest` may change
  info speed TRAIN_FLAGS  this machine's sec/kimg for the network `train TRAIN_FLAGS` would
        build (needs --res; no --data): a few real training steps, seconds on the CPU preset
  info --snapshot FILE    the former form of `info snapshot` (kept for scripts)

Only `snapshot` and `speed` import torch; the others answer in well under a second.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from trainer.augment_names import AUGPIPES
from trainer.config import (
    PRESETS,
    AugmentConfig,
    NetworkConfig,
    TrainConfig,
    bf16_min_res,
    preset_values,
)

# What the trainer can run: beyond these an option is a typo or cannot fit any machine.
# kimg, tick and target exclude their lower bound (target its upper one too).
LIMITS: dict[str, tuple[float, float]] = {
    "res": (8, 4096),
    "kimg": (0, 1_000_000),  # > 0
    "batch": (1, 4096),
    "gamma": (0, 10_000),
    "target": (0, 1),  # exclusive
    "p": (0, 1),
    "ada_kimg": (1, 100_000),
    "snap": (1, 100_000),
    "tick": (0, 10_000),  # > 0
    "seed": (0, 2**31 - 1),
    "cbase": (8, 65536),
    "cmax": (1, 2048),
    "map": (1, 16),
    "zdim": (1, 2048),
    "mbstd_group": (1, 64),
    "lr": (1e-6, 1),
    "ema": (0, 10_000),
    "workers": (1, 64),
    "metrics_every": (0, 100_000),
    "metrics_num": (2, 100_000),
}


def channels_at(res: int, cbase: int, cmax: int) -> int:
    """Feature maps at one resolution: min(cbase // res, cmax), as the networks build them."""
    return max(min(cbase // res, cmax), 1)


def network_macs(res: int, cbase: int, cmax: int, zdim: int, mapping: int) -> dict[str, int]:
    """Multiply-accumulates of one image through G and D (3×3 convolutions dominate)."""
    g = mapping * zdim * zdim
    d = 0
    r = 4
    while r <= res:
        c = channels_at(r, cbase, cmax)
        c_in = channels_at(r // 2, cbase, cmax) if r > 4 else c
        g += r * r * (9 * c_in * c + 9 * c * c + c)  # conv0 (or const conv), conv1, toRGB
        d += r * r * (9 * c * c) + (r // 2) ** 2 * 9 * c * c_in + r * r * c  # conv0, conv1, fromRGB
        r *= 2
    return {"G": int(g), "D": int(d)}


def cpu_bf16_units() -> str | None:
    """This CPU's bf16 matrix hardware, from /proc/cpuinfo (no torch import): 'amx' (the
    mixed-precision run is several times faster there), 'avx512_bf16', or None (bf16 would be
    emulated: slower than fp32)."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            lines = (line for line in f if line.startswith("flags"))
            flags = next(lines, ":").split(":", 1)[1].split()
    except OSError:
        return None
    return "amx" if "amx_bf16" in flags else "avx512_bf16" if "avx512_bf16" in flags else None


def defaults(
    res: int, gpus: int = 0, batch: int | None = None, cfg: str = "auto", **net: int | None
) -> dict:
    """A fresh run's options at `res` (the same functions `train` uses); `net` (cbase, cmax,
    zdim, map) overrides the preset's network for the MAC count."""
    world = max(gpus, 1)
    pv = preset_values(cfg, res, world, batch)
    zdim = NetworkConfig(img_resolution=res).z_dim
    train, aug = TrainConfig(batch=pv["batch"]), AugmentConfig()
    macs = network_macs(
        res,
        net.get("cbase") or pv["channel_base"],
        net.get("cmax") or pv["channel_max"],
        net.get("zdim") or zdim,
        net.get("map") or pv["mapping_layers"],
    )
    return {
        "res": res,
        "cfg": cfg,
        "world_size": world,
        "batch": pv["batch"],
        "gamma": round(pv["r1_gamma"], 6),
        "cbase": pv["channel_base"],
        "cmax": pv["channel_max"],
        "map": pv["mapping_layers"],
        "zdim": zdim,
        "mbstd_group": pv["mbstd_group_size"],
        "lr": pv["lr"],
        "ema": pv["ema_kimg"],
        "kimg": train.total_kimg,
        "tick": train.kimg_per_tick,
        "snap": train.snap_ticks,
        "seed": train.seed,
        "aug": "ada",
        "augpipe": "bgc",
        "bf16_res": bf16_min_res(res),  # --bf16: these resolutions and above in bf16
        "cpu_bf16": cpu_bf16_units(),
        "augpipes": sorted(AUGPIPES),
        "target": aug.target,
        "ada_kimg": aug.kimg,
        "metrics_every": train.metrics_every,
        "metrics_num": train.metrics_num,
        "macs_per_image": macs,
        "limits": {k: list(v) for k, v in LIMITS.items()},
    }


def resume_options() -> dict:
    """The flags `--resume latest` honours; any other flag is ignored with a warning."""
    from trainer.options import RESUME_OVERRIDES

    return {"flags": sorted(RESUME_OVERRIDES), "also": ["data"]}


def snapshot_facts(path: str) -> dict[str, Any]:
    """A snapshot's progress, networks, options and dataset facts (no weights)."""
    from trainer.snapshot import load_snapshot

    state = load_snapshot(path, "cpu")
    g = state["G_ema"]["init_kwargs"]
    ds = dict(state.get("dataset") or {})
    options = state.get("options") or {}
    return {
        "kimg": state["progress"]["cur_nimg"] / 1000,
        "cur_nimg": state["progress"]["cur_nimg"],
        "tick": state["progress"]["tick"],
        "generator": g,
        "discriminator": state["D"]["init_kwargs"],
        "network": {
            "resolution": g["img_resolution"],
            "channels": g["img_channels"],
            "c_dim": g["c_dim"],
            "zdim": g["z_dim"],
            "cbase": g["channel_base"],
            "cmax": g["channel_max"],
            "map": g["mapping_layers"],
        },
        "augment_p": state["augment"]["p"],
        "hu_mapping": ds.get("hu_mapping"),
        "bits": ds.get("bits"),
        "dataset": {k: v for k, v in ds.items() if k != "provenance"},
        "provenance": ds.get("provenance"),
        "options": options,
    }


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m trainer info", description=__doc__.split("\n")[0])
    p.add_argument("--snapshot", help="the former form of `info snapshot FILE`")
    sub = p.add_subparsers(dest="what")
    d = sub.add_parser("defaults", help="a fresh run's options at one resolution")
    d.add_argument("--res", type=int, required=True, action="append", help="repeat for several")
    d.add_argument("--gpus", type=int, default=0, help="processes (0 = CPU, counts as 1)")
    d.add_argument("--batch", type=int, help="the batch the other defaults follow")
    d.add_argument("--cfg", choices=PRESETS, default="auto")
    for flag in ("--cbase", "--cmax", "--zdim", "--map"):
        d.add_argument(flag, type=int, help="network for macs_per_image (default: the preset's)")
    s = sub.add_parser("snapshot", help="a snapshot's facts")
    s.add_argument("file")
    sub.add_parser("resume-options", help="the options a resume may change")
    sp = sub.add_parser("speed", help="measured sec/kimg of a job's network on this machine")
    sp.add_argument("train_flags", nargs=argparse.REMAINDER, help="`train` flags, --res needed")
    return p


def _answer(args: argparse.Namespace) -> Any:
    if args.what == "defaults":
        lo, hi = LIMITS["res"]
        for r in args.res:
            if not lo <= r <= hi or r & (r - 1):
                raise ValueError(f"--res {r} is not a power of two between {lo:g} and {hi:g}")
        if args.batch is not None and not 1 <= args.batch <= LIMITS["batch"][1]:
            raise ValueError(f"--batch must be between 1 and {LIMITS['batch'][1]:g}")
        net = {k: getattr(args, k) for k in ("cbase", "cmax", "zdim", "map")}
        for k, v in net.items():
            if v is not None and not LIMITS[k][0] <= v <= LIMITS[k][1]:
                raise ValueError(f"--{k} must be between {LIMITS[k][0]:g} and {LIMITS[k][1]:g}")
        out = [defaults(r, args.gpus, args.batch, args.cfg, **net) for r in args.res]
        return out[0] if len(out) == 1 else out
    if args.what == "resume-options":
        return resume_options()
    if args.what == "speed":
        from trainer.speed_probe import probe

        return probe(args.train_flags)
    path = args.file if args.what == "snapshot" else args.snapshot
    if not path:
        raise ValueError("say what: defaults --res N, snapshot FILE or resume-options")
    return snapshot_facts(path)


def main(argv: list[str]) -> int:
    """Exit 0 with one JSON line; 2 with `error: ...` on stderr for a bad question or file."""
    parser = build_parser()
    args, rest = parser.parse_known_args(argv)
    if args.what == "speed":  # its flags are `train`'s, checked by the train parser
        args.train_flags = rest + args.train_flags
    elif rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    try:
        out = _answer(args)
    except ValueError as e:  # SnapshotError is one too
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(json.dumps(out))
    return 0


if __name__ == "__main__":  # `python -m trainer.info ...`: the same, without importing torch
    sys.exit(main(sys.argv[1:]))
