"""``mummi-ml evaluate``: the three criteria of a trained metric against baselines and ablations,
distribution shift, time and space, as metrics.json, tables, PNG figures and report.html."""

from __future__ import annotations

import argparse
import os
import sys

HELP = "evaluate a trained metric: criteria, baselines, ablations, figures and report.html"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, metavar="DIR", help="trained model directory")
    parser.add_argument(
        "--data", required=True, metavar="F.h5", help="held-out pre-campaign patch file"
    )
    parser.add_argument(
        "--campaign", metavar="F.h5", default=None, help="campaign-preset patches (shifted data)"
    )
    parser.add_argument(
        "--histories", metavar="F.h5", default=None, help="dense single-protein histories"
    )
    parser.add_argument(
        "--ablation",
        metavar="NAME=DIR",
        action="append",
        default=[],
        help="another model evaluated as an ablation row, e.g. 'L_rad=runs/rad' (repeatable)",
    )
    parser.add_argument("--out", required=True, metavar="DIR", help="output directory")
    parser.add_argument("--no-baselines", action="store_true", help="skip the l2 baselines")
    parser.add_argument("--no-progress", action="store_true", help="no progress messages")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from mummi_ml.cli._common import config_from_args
    from mummi_ml.evaluate.errors import EvaluationError
    from mummi_ml.evaluate.pipeline import run_evaluation

    cfg = config_from_args(args).evaluate
    if args.no_baselines:
        cfg.baselines = False
    for opt, value in (
        ("--data", args.data),
        ("--campaign", args.campaign),
        ("--histories", args.histories),
    ):
        if value is not None and not Path(value).is_file():
            raise EvaluationError(f"{opt}: file not found: {value}")
    ablations = {}
    for item in args.ablation:
        name, sep, path = item.partition("=")
        if not sep or not name.strip() or not path.strip():
            raise EvaluationError(f"--ablation: expected NAME=DIR, got {item!r}")
        ablations[name.strip()] = path.strip()
    quiet = args.no_progress or os.environ.get("CI", "").lower() in ("1", "true")
    result = run_evaluation(
        args.model,
        args.data,
        args.out,
        cfg,
        campaign=args.campaign,
        histories=args.histories,
        ablations=ablations,
        progress=not quiet,
    )
    print((Path(args.out) / "table.md").read_text(), end="")
    print(
        f"wrote {args.out}/metrics.json and {args.out}/report.html ({result.seconds:.0f} s)",
        file=sys.stderr,
    )
    return 0
