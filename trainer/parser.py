"""Argument parser of `python -m trainer`; train flags default to None so presets can fill them."""

from __future__ import annotations

import argparse

from trainer.augment_names import AUGPIPES

BOOL = argparse.BooleanOptionalAction


def _add_train(sub) -> None:
    p = sub.add_parser(
        "train",
        help="train StyleGAN2-ADA on a dataset zip",
        description="Train into --outdir, which is the run directory itself. --resume latest "
        "continues the newest snapshot there with the run's own options (only --kimg, --snap, "
        "--device, --workers, --compile, --channels-last and --metrics-* may change); --resume "
        "FILE from another run fine-tunes its weights on --data.",
    )
    a = p.add_argument
    a("--data", help="dataset zip (StyleGAN2-ADA layout); taken from the run when resuming")
    a("--outdir", required=True, help="the run directory (created if missing)")
    a("--res", type=int, help="expected image size; the data must match it")
    a("--kimg", type=float, help="train until this many thousand real images (default 25000)")
    a("--batch", type=int, help="total batch over all processes (default: from the preset)")
    a("--gamma", type=float, help="R1 weight (default: 0.0002 * res^2 / batch)")
    a("--aug", choices=["ada", "noaug"], help="augmentation (default ada)")
    a(
        "--augpipe",
        choices=list(AUGPIPES),
        help="the paper's transform groups: b(lit) g(eom) c(olor) f(ilter) n(oise) c(utout); "
        "default bgc, its recommendation for small datasets",
    )
    a("--target", type=float, help="ADA target for E[sign(D(real))] (default 0.6)")
    a("--p", type=float, help="fixed augmentation probability (no tuning)")
    a("--ada-kimg", type=float, help="ADA speed: kimg for p to go 0 -> 1 (default 500)")
    a("--mirror", action=BOOL, help="add x-flipped copies of the images")
    a("--cond", action=BOOL, help="condition on dataset.json labels (normal / tumour)")
    a("--snap", type=int, help="snapshot every N ticks (default 50)")
    a("--tick", type=float, help="kimg per tick (default 4)")
    a("--seed", type=int, help="random seed (default 0)")
    a("--resume", help="SNAPSHOT file, or 'latest' in --outdir")
    a("--device", choices=["cpu", "cuda", "auto"], help="default auto (cuda when present)")
    a("--cfg", choices=["auto", "paper"], help="preset (default auto)")
    a("--cbase", type=int, help="channel base (channels = min(cbase / res, cmax))")
    a("--cmax", type=int, help="maximum channels per layer")
    a("--map", type=int, help="mapping network depth")
    a("--dmap", type=int, help="depth of D's label embedding, conditional runs (default 8)")
    a("--zdim", type=int, help="z and w dimensionality (default 512; small for tests)")
    a("--mbstd-group", type=int, help="minibatch-std group size (default min(batch, 4))")
    a("--lr", type=float, help="Adam learning rate")
    a("--ema", type=float, help="G_ema half-life in kimg")
    a(
        "--bf16",
        action=BOOL,
        help="mixed precision as the reference: bf16 on the 4 highest "
        "resolutions (from max(res/8, 8)); default on CUDA, off on a CPU, where it pays on "
        "CPUs with bf16 matrix units (AMX: python -m trainer info defaults says)",
    )
    a("--channels-last", action=BOOL, help="channels_last memory format")
    a("--compile", action=BOOL, help="torch.compile the main-phase networks")
    a("--workers", type=int, help="threads decoding the PNGs at start")
    _add_metrics(a)


def _add_metrics(a) -> None:
    """FID/KID during training, for the FID-over-kimg curve of the job page."""
    a(
        "--metrics-every",
        type=int,
        metavar="N",
        help="FID/KID of G_ema at every N-th snapshot and the last, written into that tick's "
        "stats.jsonl line; 0 = off (default). Slow on the CPU; needs the Inception weights "
        "(python -m trainer fetch-weights) unless --metrics-extractor-module names another",
    )
    a(
        "--metrics-num",
        type=int,
        metavar="N",
        help="generated samples per measurement (default 2000: FID from 2k samples is biased "
        "upward, so read it as a curve, not as the final number; `python -m trainer "
        "metrics` gives that)",
    )
    a(
        "--metrics-extractor-module",
        metavar="MODULE[:FUNCTION]",
        help="as `metrics --extractor-module`: import MODULE (and call FUNCTION) to register a "
        "torch-fidelity feature extractor; a name FUNCTION returns replaces Inception",
    )


def _add_generate(sub) -> None:
    p = sub.add_parser("generate", help="images from a snapshot")
    a = p.add_argument
    a("--snapshot", required=True, help="snapshot-KKKKKK.pt")
    a("--seeds", help="e.g. 0-99 or 1,5,7 (or --z)")
    a("--z", metavar="FILE.npy", help="float32 latents [N, z_dim] instead of seeds")
    a("--c", metavar="FILE.npy", help="float32 labels [N, c_dim] for --z (or --class K)")
    a("--noise-mode", choices=["const", "random", "none"], default="const")
    a("--noise-seed", type=int, default=0, help="seed of --noise-mode random (default 0)")
    a("--trunc", type=float, default=1.0, help="truncation psi (default 1 = none)")
    a("--class", dest="class_idx", type=int, help="class for a conditional generator")
    a("--outdir", required=True)
    a(
        "--format",
        choices=["png", "png16", "nifti", "npy"],
        default="png",
        help="npy: images.npy, G's raw float32 output [N, C, R, R] before any windowing",
    )
    a("--hu", help="LO,HI (write --hu=-1000,1000): HU at pixel 0 and at full scale")
    a("--device", choices=["cpu", "cuda", "auto"], default="auto")
    a("--raw", action="store_true", help="use G instead of G_ema")
    a("--batch", type=int, default=8)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m trainer", description="MedSynth trainer")
    sub = parser.add_subparsers(dest="command", required=True)
    _add_train(sub)
    _add_generate(sub)
    imp = sub.add_parser(
        "import-pkl",
        help="a published StyleGAN2-ADA .pkl as a snapshot to fine-tune (runs nothing from it)",
    )
    imp.add_argument("pkl", metavar="FILE.pkl")
    imp.add_argument("--out", required=True, metavar="SNAPSHOT.pt")
    imp.add_argument(
        "--channels", type=int, choices=[1, 3], help="1: RGB to gray by luma; default: as is"
    )
    # Listed for --help only: main() hands these argv to trainer.metrics.main unparsed.
    sub.add_parser(
        "metrics", help="quality metrics of a snapshot, one JSON object (trainer.metrics)"
    )
    sub.add_parser(
        "fetch-weights", help="download the metrics' pretrained weights (trainer.metrics)"
    )
    sub.add_parser("utility", help="does synthetic data help segmentation? (trainer.utility)")
    i = sub.add_parser("info", help="print a snapshot's facts as one JSON line")
    i.add_argument("--snapshot", required=True)
    return parser
