"""`python -m trainer train|generate|metrics|info`: the trainer's whole outside interface.

Exit codes of `train`: 0 done, 4 stopped by SIGTERM/SIGINT before its kimg (snapshot written:
continue with `--resume latest`), 1 unexpected error (traceback in log.txt, message on stderr),
2 usage, dataset or snapshot error. The same code is left in the run folder's `exit.json`.
Under torchrun a stopped worker exits 0 (torchrun takes any other code for a failure); its
exit.json still says 4, "stopped".
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import traceback

from trainer import distributed, exit_record
from trainer.dataset import DatasetError, load_dataset
from trainer.device_setup import training_device
from trainer.options import (
    UsageError,
    check_finetune,
    config_from_args,
    resume_config,
)
from trainer.parser import build_parser
from trainer.snapshot import SnapshotError, find_latest, load_snapshot


def _resume_state(args: argparse.Namespace, run_dir: str) -> tuple[dict | None, str]:
    """(snapshot, mode): mode 'fresh', 'resume' (same run dir) or 'finetune' (another run)."""
    existing = find_latest(run_dir)
    inside = bool(args.resume) and (
        args.resume == "latest" or os.path.dirname(os.path.abspath(args.resume)) == run_dir
    )
    if existing is not None and not inside:
        raise UsageError(
            f"{run_dir} already holds a run (e.g. {os.path.basename(existing)}); "
            "continue it with --resume latest or choose another --outdir"
        )
    if not args.resume:
        return None, "fresh"
    path = find_latest(run_dir) if args.resume == "latest" else os.path.abspath(args.resume)
    if path is None:
        raise UsageError(f"--resume latest: no snapshot-*.pt in {run_dir}")
    state = load_snapshot(path, "cpu")
    same_run = os.path.dirname(path) == run_dir
    if same_run and "sampler" not in state:
        raise UsageError(
            f"{os.path.basename(path)} is an imported checkpoint, not a run's snapshot: "
            "fine-tune from it with --resume FILE and another --outdir"
        )
    return state, "resume" if same_run else "finetune"


def _dataset_for(
    args: argparse.Namespace, cfg_data: str, cond: bool, mirror: bool, res, workers: int
):
    data = args.data or cfg_data
    if not data:
        raise UsageError("--data DATA.zip is required")
    return load_dataset(data, resolution=res, mirror=mirror, cond=cond, workers=workers)


def _train(args: argparse.Namespace, stop, log_holder: list) -> int:
    from trainer.loop import Run, start, training_loop
    from trainer.periodic_metrics import PeriodicMetrics
    from trainer.stats import RunLog
    from trainer.training import Trainer

    run_dir = os.path.abspath(args.outdir)
    rank = int(os.environ.get("RANK", "0"))
    if rank == 0:
        os.makedirs(run_dir, exist_ok=True)
    log = RunLog(run_dir if rank == 0 else None, echo=rank == 0)
    log_holder.append(log)
    state, mode = _resume_state(args, run_dir)
    ignored: list[str] = []
    if mode == "resume":
        cfg = resume_config(state["options"], args, ignored)
        ds = _dataset_for(
            args,
            cfg.train.data,
            cfg.train.cond,
            cfg.train.mirror,
            cfg.network.img_resolution,
            cfg.train.workers,
        )
    else:
        ds = _dataset_for(args, "", bool(args.cond), bool(args.mirror), args.res, args.workers or 1)
    device = training_device(args.device or (cfg.train.device if mode == "resume" else "auto"))
    dist_info = distributed.init_from_env(device)
    if mode != "resume":
        cfg = config_from_args(args, ds, dist_info.world_size, device.type == "cuda")
        if mode == "finetune":
            cfg = check_finetune(state, cfg)
    if cfg.train.batch % dist_info.world_size:
        raise UsageError(f"batch {cfg.train.batch} is not divisible by {dist_info.world_size}")
    if ignored:
        log.line(f"warning: resuming with the run's own options; ignored {' '.join(ignored)}")
    if device.type == "cuda" and ds.images.numel() * ds.images.element_size() < 2**31:
        ds.to(device)  # the whole dataset on the GPU: batches need no host transfer
    metrics = PeriodicMetrics(cfg.train, log, dist_info.is_main)  # a bad module: exit 2 now
    trainer = Trainer(cfg, ds, device, dist_info)
    run = Run(cfg, ds, run_dir, log, dist_info, stop, metrics)
    log.line(
        f"{mode} run in {run_dir}: {ds.num_images} images {ds.resolution}x{ds.resolution} "
        f"{ds.bits}-bit, batch {cfg.train.batch}, {dist_info.world_size} process(es) on "
        f"{device}, gamma {cfg.loss.r1_gamma:g}, aug {cfg.augment.mode}"
    )
    progress = start(run, trainer, state, mode)
    del state
    return training_loop(run, trainer, progress)


def cmd_train(args: argparse.Namespace) -> int:
    from trainer.loop import StopFlag

    logs: list = []
    rc = 1
    main_rank = os.environ.get("RANK", "0") == "0"
    run_dir = os.path.abspath(args.outdir) if args.outdir else ""
    if main_rank and run_dir:
        exit_record.clear(run_dir)
    with StopFlag() as stop:
        try:
            rc = _train(args, stop, logs)
            return rc
        except (DatasetError, SnapshotError, UsageError) as e:
            _report(logs, f"error: {e}")
            return 2
        except Exception as e:
            _report(logs, "error: " + "".join(traceback.format_exception(e)).rstrip(), quiet=True)
            print(f"error: {type(e).__name__}: {e} (traceback in log.txt)", file=sys.stderr)
            return 1
        finally:
            for log in logs:
                log.close()
            distributed.shutdown(clean=rc in (0, exit_record.EXIT_STOPPED))
            if main_rank and run_dir and os.path.isdir(run_dir):
                exit_record.write(run_dir, rc, stop.signal_name)


def _report(logs: list, msg: str, quiet: bool = False) -> None:
    if logs:
        logs[0].line(msg, stderr=not quiet)
    elif not quiet:
        print(msg, file=sys.stderr)


def cmd_generate(args: argparse.Namespace) -> int:
    from trainer.generate import run_generate

    try:
        written = run_generate(args)
    except (SnapshotError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(json.dumps({"outdir": os.path.abspath(args.outdir), "images": written}))
    return 0


def cmd_import_pkl(args: argparse.Namespace) -> int:
    """One JSON line about the written snapshot; exit 2 for a refused or unmappable file."""
    from trainer.import_pkl import CheckpointImportError, RefusedPickle, run_import

    if not os.path.isfile(args.pkl):
        print(f"error: {args.pkl} not found", file=sys.stderr)
        return 2
    try:
        facts = run_import(args)
    except (RefusedPickle, CheckpointImportError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(json.dumps(facts))
    return 0


def cmd_metrics(argv: list[str]) -> int:
    """Delegates to trainer.metrics.main(argv), which another module provides."""
    try:
        import trainer.metrics as metrics
    except ModuleNotFoundError as e:
        if e.name != "trainer.metrics":
            raise
        print(
            "error: metrics are not available yet (trainer.metrics is not installed)",
            file=sys.stderr,
        )
        return 2
    return int(metrics.main(list(argv)) or 0)


def cmd_info(argv: list[str]) -> int:
    """`info defaults|snapshot|resume-options`: JSON answers for the web app (trainer.info)."""
    from trainer.info import main as info_main

    return info_main(list(argv))


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["metrics"]:
        return cmd_metrics(argv[1:])  # its options belong to trainer.metrics
    if argv[:1] == ["fetch-weights"]:
        return cmd_metrics(argv)  # trainer.metrics.main dispatches this one itself
    if argv[:1] == ["info"]:
        return cmd_info(argv[1:])  # its sub-commands belong to trainer.info
    if argv[:1] == ["utility"]:
        from trainer.utility import main as utility_main  # its options: trainer.utility.cli

        return utility_main(argv[1:])
    args = build_parser().parse_args(argv)
    handlers = {"train": cmd_train, "generate": cmd_generate, "import-pkl": cmd_import_pkl}
    return handlers[args.command](args)
