"""``mummi-ml train``: train the metric (data parallel under mpiexec / srun / jsrun / flux run).

``--init-from MODEL_DIR`` fine-tunes an existing model (same architecture, else exit 2 naming the
first differing ``model.*`` key): its weights and standardisation are the start, the schedule is
``train.finetune_epochs`` / ``train.finetune_learning_rates`` / ``train.finetune_lr_boundaries``
(set them with ``--set``), and metric.json records the parent's version (``parent``, ``lineage``).

Exit status: 0 trained (``OUT`` is a model directory), 2 bad input, 3 stopped by SIGTERM/SIGUSR1
after writing a checkpoint (rerun with ``--resume`` to continue).
"""

from __future__ import annotations

import argparse
import os
import sys

HELP = "train the similarity metric on HDF5 patch files (data parallel across ranks and nodes)"

EXIT_INTERRUPTED = 3


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data", required=True, nargs="+", metavar="F.h5",
        help="patch files, globs (e.g. 'run/patches.rank*.h5') or directories of *.h5",
    )
    parser.add_argument("--out", required=True, metavar="DIR", help="run and model directory")
    parser.add_argument(
        "--resume", action="store_true",
        help="continue from DIR/checkpoint.pt if present (else start afresh)",
    )
    parser.add_argument(
        "--init-from", metavar="MODEL_DIR", default=None,
        help="fine-tune this model directory (same architecture) with the train.finetune_* "
        "schedule instead of training from scratch",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def _show_progress(args: argparse.Namespace) -> bool:
    ci = os.environ.get("CI", "").lower() in ("1", "true")
    return not args.no_progress and sys.stderr.isatty() and not ci


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from mummi_ml.cli._common import config_from_args
    from mummi_ml.metric import TrainingInterrupted, train_model
    from mummi_ml.parallel import init_distributed

    cfg = config_from_args(args)
    # every argument is checked before the work (and before any progress line)
    from mummi_ml.metric import MetricError
    from mummi_ml.patch import validate_files

    # opens every file and validates every patch (one streaming pass; train_model repeats it on
    # every rank): a bad patch is one line, not one line after the banner
    validate_files([Path(p) for p in args.data])
    if Path(args.out).exists() and not Path(args.out).is_dir():
        raise MetricError(f"--out: {args.out} exists and is not a directory")
    if args.init_from is not None:
        from mummi_ml.metric import Trainer

        Trainer.check_parent(Path(args.init_from), cfg.model, Path(args.out))
    ctx = init_distributed(cfg.train.device, cfg.train.num_threads)
    train_cfg = cfg.train.finetuning() if args.init_from is not None else cfg.train
    how = f"fine-tuning {args.init_from}, " if args.init_from is not None else ""
    try:
        if ctx.is_root:
            print(
                f"mummi-ml train: {ctx.size} rank(s) ({ctx.info.launcher}, {ctx.backend}, "
                f"{ctx.device}), {how}global batch {train_cfg.batch_size}, "
                f"{train_cfg.epochs} epochs -> {args.out}",
                file=sys.stderr,
            )
        try:
            out = train_model(
                cfg.model, cfg.loss, cfg.train, [Path(p) for p in args.data], Path(args.out),
                resume=args.resume, progress=_show_progress(args), ctx=ctx,
                init_from=args.init_from,
            )
        except TrainingInterrupted as exc:
            if ctx.is_root:
                print(f"mummi-ml train: {exc}", file=sys.stderr)
            return EXIT_INTERRUPTED
        if ctx.is_root:
            print(f"mummi-ml train: model written to {out}", file=sys.stderr)
        return 0
    finally:
        ctx.close()
