"""``mummi-ml demo``: the whole pipeline end to end, at laptop size.

Steps (each the subcommand of the same name, run in this process, into ``OUT``):

1. ``simulate``: pre-campaign training patches (+ dense histories and figures), a held-out
   pre-campaign file (another seed and replica ids) and campaign-preset patches;
2. ``train``: the metric, on the training file (config ``train`` section);
3. ``evaluate``: criteria, baselines, distribution shift, time and space, ``report.html``;
4. the closed loop, in rounds of ``couple --spool`` + ``select --once`` (stream patches into a
   spool directory, let the selector embed them, pick the most novel and run one stand-in MD
   job per free slot): round 1 streams pre-campaign patches, rounds 2 and 3 campaign-preset
   patches whose parameters have reached the campaign targets (:data:`SWITCH`: the stream
   switches). When the selector's drift monitor sees the drift in round 2 it
   writes a training snapshot (its reservoir + the selected patches) and submits the retraining
   (``train --init-from`` the model, fine-tuning) through the jobs backend into
   ``OUT/model-updates/``; when it does not (at the demo's size the campaign patches of a short
   run may not leave the training distribution by the monitor's figures), the demo asks for the
   retraining as an operator would (``STATE/RETRAIN``). The demo waits for that model to be
   complete before round 3 (where a selector that hot-swaps models adopts it);
5. ``status``: print the selector's status; ``report``: the campaign report,
   ``OUT/report/campaign_report.html``, beside the evaluation report.

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
    from mummi_ml.selector.loop import RETRAIN_FILE, RETRAIN_LOG

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
    select = ["select", *common, *_loop_sets(model, out / "model-updates", n_small), "--once",
              "--state-dir", str(selector_dir), "--spool", str(spool),
              "--weights", str(out / "importance_weights.json")]
    ran = 0
    for i, (preset, n) in enumerate(_rounds(n_small)):
        done = out / "rounds" / f"round-{i + 1}.done"
        if done.exists():
            continue
        _step(f"round {i + 1}: couple ({preset} patches into the spool)", ["couple", *common,
              *quiet, *(SWITCH if preset == "campaign" else []),
              "--set", f"continuum.seed={3003 + 1000 * i}", "--replica-offset",
              str(3000 + 1000 * i), "--preset", preset, "--patches", str(n), "--batch-size",
              "256", "--spool", str(spool)])
        _step(f"round {i + 1}: select --once", select)
        if i == 1:
            if not (selector_dir / RETRAIN_LOG).exists():  # no drift event: ask as an operator
                print("mummi-ml demo: no drift event in round 2 (see drift.jsonl): requesting the "
                      f"retraining as an operator would ({selector_dir / RETRAIN_FILE})",
                      file=sys.stderr)
                (selector_dir / RETRAIN_FILE).touch()
                _step("round 2: select --once (the operator's request)", select)
            _wait_for_retraining(selector_dir, args)
        done.parent.mkdir(exist_ok=True)
        done.touch()
        ran += 1
    if not ran:  # a rerun of a finished demo: pick for the slots freed since
        _step("select --once", select)
    _step("status", ["status", str(selector_dir)])
    _step("report (campaign)", ["report", str(selector_dir), "--out", str(report)])
    print(
        f"mummi-ml demo: finished in {time.perf_counter() - started:.0f} s; "
        f"open {report / 'report.html'} and {report / 'campaign_report.html'}; selector state "
        f"in {selector_dir}",
        file=sys.stderr,
    )
    return 0


SWITCH = ["--set", "continuum.campaign.drift_time_us=0.5", "--set", "continuum.equilibration_us=6"]
"""The campaign rounds' stream has switched: the campaign preset's targets are reached in 0.5 us
(instead of drifting there over 200 us) and the patches are taken after 6 us, once the state has
followed them. (A short run of the default campaign preset is still at its start, which is the
pre-campaign state: the monitor rightly sees no drift there.)"""


def _rounds(n_small: int) -> list[tuple[str, int]]:
    """(preset, patches) of the selection rounds: pre-campaign, then the campaign preset."""
    return [("pre-campaign", n_small), ("campaign", n_small), ("campaign", max(50, n_small // 2))]


def _loop_sets(model: Path, updates: Path, n_small: int) -> list[str]:
    """The selector's closed-loop settings of the demo (``--set`` items): drift windows of a
    third of a round, a retraining snapshot on the drift event, the retraining submitted (one
    fine-tuning epoch) into ``updates``."""
    sets = [f"selector.model_dir={model}", "selector.embedding=model",
            f"selector.model_updates_dir={updates}",
            f"selector.drift.window={max(50, n_small // 3)}",
            "selector.retrain.reservoir_per_class=250", "selector.retrain.on_drift=true",
            "selector.retrain.submit=true",
            'selector.retrain.train_overrides=["train.finetune_epochs=1"]']
    return [item for kv in sets for item in ("--set", kv)]


def _wait_for_retraining(state_dir: Path, args: argparse.Namespace,
                         timeout_s: float = 900) -> None:
    """Wait until every retraining job the selector submitted has ended; raise if one failed or
    left no complete model."""
    from mummi_ml.backends import make_backend
    from mummi_ml.cli._common import config_from_args
    from mummi_ml.errors import MummiMLError
    from mummi_ml.selector.loop import read_retrain_log, wait_for_retraining

    jobs = read_retrain_log(state_dir)
    if not jobs:
        print("mummi-ml demo: no retraining was submitted (no drift event?)", file=sys.stderr)
        return
    backend = make_backend(config_from_args(args).jobs, state_dir)
    start = time.perf_counter()
    deadline = time.monotonic() + timeout_s
    for job in jobs:
        print(f"mummi-ml demo: waiting for the retraining {job['name']} -> {job['out']}",
              file=sys.stderr)
        try:
            wait_for_retraining(backend, job, deadline)
        except MummiMLError as exc:
            raise MummiMLError(f"{exc} ({timeout_s:.0f} s allowed; see {state_dir}/retrain/)"
                               ) from None
    print(f"mummi-ml demo: retraining done in {time.perf_counter() - start:.1f} s",
          file=sys.stderr)
