"""``mummi-ml demo``: the whole pipeline end to end, at laptop size.

Steps (each the subcommand of the same name, run in this process, into ``OUT``):

1. ``simulate``: pre-campaign training patches (+ dense histories and figures), a held-out
   pre-campaign file (another seed and replica ids) and campaign-preset patches;
2. ``train``: the metric, on the training file (config ``train`` section);
3. ``evaluate``: criteria, baselines, distribution shift, time and space, ``report.html``;
4. ``couple --spool`` + ``select --once``: stream campaign patches into a spool directory, let
   the selector embed them, pick the most novel and run one stand-in MD job per free slot;
5. ``status``: print the selector's status.

A step whose output is already complete is skipped, so an interrupted demo reruns from where it
stopped. Sizes come from ``--patches`` (training patches; the others scale from it).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

HELP = "run the whole pipeline end to end at laptop size: simulate, train, evaluate, select"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default="runs/demo", metavar="DIR", help="output directory")
    parser.add_argument(
        "--patches", type=int, default=6000, metavar="N",
        help="pre-campaign training patches (held-out: N/4, campaign: N/4; default 6000)",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def _step(title: str, argv: list[str]) -> None:
    """Run one ``mummi-ml`` subcommand in this process; raise on a non-zero exit."""
    from mummi_ml.cli import main
    from mummi_ml.errors import MummiMLError

    print(f"mummi-ml demo: {title}: mummi-ml {' '.join(argv)}", file=sys.stderr)
    start = time.perf_counter()
    status = main(argv)
    if status != 0:
        raise MummiMLError(f"step '{title}' failed with exit status {status}")
    print(f"mummi-ml demo: {title}: done in {time.perf_counter() - start:.1f} s", file=sys.stderr)


def run(args: argparse.Namespace) -> int:
    from mummi_ml.errors import MummiMLError

    if args.patches < 200:
        raise MummiMLError(f"--patches must be at least 200, got {args.patches}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    common = (["--config", args.config] if args.config else []) + [
        item for kv in args.overrides for item in ("--set", kv)
    ]
    quiet = ["--no-progress"] if args.no_progress else []
    n_small = max(100, args.patches // 4)
    train_h5, heldout_h5, campaign_h5 = out / "train.h5", out / "heldout.h5", out / "campaign.h5"
    model, report = out / "model", out / "report"
    selector_dir, spool = out / "selector", out / "spool"
    started = time.perf_counter()

    if not train_h5.exists():
        _step("simulate (pre-campaign, training)", ["simulate", *common, *quiet,
              "--preset", "pre-campaign", "--patches", str(args.patches), "--out", str(train_h5),
              "--histories", "4", "--plot", str(out / "figures")])
    if not heldout_h5.exists():
        _step("simulate (pre-campaign, held out)", ["simulate", *common, *quiet,
              "--set", "continuum.seed=1001", "--replica-offset", "1000",
              "--preset", "pre-campaign", "--patches", str(n_small), "--out", str(heldout_h5)])
    if not campaign_h5.exists():
        _step("simulate (campaign)", ["simulate", *common, *quiet,
              "--set", "continuum.seed=2002", "--replica-offset", "2000",
              "--preset", "campaign", "--patches", str(n_small), "--out", str(campaign_h5)])
    if not (model / "metric.json").exists():
        _step("train", ["train", *common, *quiet, "--data", str(train_h5), "--out", str(model),
                        "--resume"])
    if not (report / "report.html").exists():
        histories = train_h5.with_name(train_h5.stem + ".histories.h5")
        _step("evaluate", ["evaluate", *common, *quiet, "--model", str(model),
                           "--data", str(heldout_h5), "--campaign", str(campaign_h5),
                           "--histories", str(histories), "--out", str(report)])
    if not any(spool.glob("*.h5")) and not (selector_dir / "status.json").exists():
        _step("couple (campaign patches into the spool)", ["couple", *common, *quiet,
              "--set", "continuum.seed=3003", "--replica-offset", "3000",
              "--preset", "campaign", "--patches", str(n_small), "--batch-size", "256",
              "--spool", str(spool)])
    selector_sets = ["--set", f"selector.model_dir={model}", "--set", "selector.embedding=model"]
    _step("select --once", ["select", *common, *selector_sets, "--once",
                            "--state-dir", str(selector_dir), "--spool", str(spool),
                            "--weights", str(out / "importance_weights.json")])
    _step("status", ["status", str(selector_dir)])
    print(
        f"mummi-ml demo: finished in {time.perf_counter() - started:.0f} s; "
        f"open {report / 'report.html'}; selector state in {selector_dir}",
        file=sys.stderr,
    )
    return 0
