"""``mummi-ml sweep``: train a grid (or random sample) of models and the loss ablations, spread
over MPI ranks (``mpiexec -n R mummi-ml sweep ...``: rank r trains runs r, r+R, ...), evaluate
each, draw the parallel-coordinates plot and select the best-balanced model."""

from __future__ import annotations

import argparse
import os
import sys

HELP = "train and evaluate a hyperparameter sweep and the loss ablations (over MPI ranks)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data", required=True, nargs="+", metavar="F.h5", help="training patch files"
    )
    parser.add_argument(
        "--eval-data", required=True, metavar="F.h5", help="held-out patches for the criteria"
    )
    parser.add_argument("--out", required=True, metavar="DIR", help="sweep directory")
    parser.add_argument("--dry-run", action="store_true", help="print the planned runs and exit")
    parser.add_argument("--no-progress", action="store_true", help="no training progress bars")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from mummi_ml.cli._common import config_from_args
    from mummi_ml.evaluate.errors import EvaluationError
    from mummi_ml.evaluate.sweep import plan_runs, run_sweep

    cfg = config_from_args(args)
    runs = plan_runs(cfg.evaluate.sweep)
    if args.dry_run:
        for r in runs:
            print(f"{r.name}\t{r.kind}\t{r.overrides}")
        return 0
    if not Path(args.eval_data).is_file():
        raise EvaluationError(f"--eval-data: file not found: {args.eval_data}")
    quiet = args.no_progress or not sys.stderr.isatty() or os.environ.get("CI") in ("1", "true")
    summary = run_sweep(cfg, args.data, args.eval_data, args.out, progress=not quiet)
    if summary is not None:
        print((Path(args.out) / "sweep.md").read_text(), end="")
        print(f"selected: {summary['selected']} ({summary['selected_model_dir']})")
        if summary["missing"]:
            print(f"missing (failed) runs: {', '.join(summary['missing'])}", file=sys.stderr)
            return 1
    return 0
