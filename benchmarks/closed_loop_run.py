"""The closed loop measured end to end at science-run size (issue 16, item 5; docs/results.md,
"Closed loop, end to end").

A selector starts with the science run's pre-campaign model (``benchmarks/science_run.sh``:
``group_all``, invariance by construction, all three losses) and ingests a stream from the real
coupler (``mummi-ml couple --spool``): round 1 pre-campaign patches, round 2 the campaign preset
(the same process and length as the held-out ``campaign.h5``, another seed and replica). Its drift
monitor sees the drift, the event's snapshot (``after_drift_arrivals`` later) is retrained through
the local jobs backend (``mummi-ml train --init-from``, data-parallel on ``--tasks`` ranks), and
round 3 hot-swaps the new model in (``selector.model_updates_dir``). Both models are then
evaluated on the science run's held-out points (pre-campaign ``heldout.h5`` and campaign
``campaign.h5``, the same ``--eval-points``):

    before   the pre-campaign model on campaign patches
    after    the retrained model on campaign patches
    pre      the pre-campaign model on pre-campaign patches (the goal: after within 20% of it)

    python benchmarks/closed_loop_run.py [--science runs/science] [--out SCIENCE/closed_loop]

Prints one JSON object (also written to ``OUT/closed_loop.json``). Each step is skipped when its
output is complete, so an interrupted run continues where it stopped; every step's wall time is
in the JSON. The science run's models predate the drift reference of ``embedding_domain.json``
and the ``COMPLETE`` marker: the pre-campaign model is copied into ``OUT/pre_model`` and given
both (its weights, hence its version, unchanged).
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mummi_ml.backends import JobsConfig

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "configs" / "paper.yaml"
GOAL = 0.20  # relative distance of the after-swap campaign figures from the pre-campaign ones
OVERLAP_RESOLUTION = 0.005  # overlap % below this reads 0.00 in the tables: equal to a 0.00


def log(msg: str) -> None:
    print(f"closed_loop_run: {time.strftime('%H:%M:%S', time.gmtime())} {msg}", file=sys.stderr)


def mummi(*argv: str, env: dict | None = None) -> None:
    """Run ``python -m mummi_ml ARGV`` (raises on a non-zero exit); its output goes to stderr,
    so that this script's stdout is its JSON alone."""
    cmd = [sys.executable, "-m", "mummi_ml", *argv]
    log(" ".join(argv[:1]) + " ...")
    subprocess.run(cmd, check=True, cwd=REPO, env=env, stdout=sys.stderr)  # stdout: the JSON


def timed(timings: dict, label: str, fn, *args) -> None:
    t0 = time.perf_counter()
    fn(*args)
    timings[label] = round(time.perf_counter() - t0, 1)


def prepare_pre_model(science: Path, out: Path) -> Path:
    """``OUT/pre_model``: the science run's ``group_all`` with a drift reference (embedded
    training sample) and the COMPLETE marker."""
    from mummi_ml.metric.domain import write_training_domain
    from mummi_ml.metric.model_dir import Metric, is_complete, write_complete_marker

    dst = out / "pre_model"
    if is_complete(dst):
        return dst
    dst.mkdir(parents=True, exist_ok=True)
    for name in ("weights.pt", "metric.json", "train_log.csv"):
        shutil.copy2(science / "group_all" / name, dst / name)
    train = sorted(glob.glob(str(science / "train.rank*.h5"))) or [str(science / "train.h5")]
    write_training_domain(dst, train)
    write_complete_marker(dst, Metric.load(dst, device="cpu").version)
    return dst


def couple(base: list[str], out: Path, name: str, preset: str, seed: int, replica: int,
           n: int) -> Path:
    """Stream ``n`` patches of ``preset`` from the real coupler into ``OUT/name`` (500 per
    file); ``OUT/name.done`` marks a finished stream."""
    d = out / name
    if not (out / f"{name}.done").exists():
        shutil.rmtree(d, ignore_errors=True)
        mummi("couple", *base, "--no-progress",
              "--set", f"continuum.seed={seed}", "--replica-offset", str(replica),
              "--preset", preset, "--patches", str(n), "--batch-size", "500", "--spool", str(d),
              env=dict(os.environ, OMP_NUM_THREADS="1"))
        (out / f"{name}.done").touch()
    return d


def feed(stream: Path, spool: Path) -> int:
    """Move every complete file of ``stream`` into the selector's spool (a rename: atomic)."""
    from mummi_ml.durable import rename

    spool.mkdir(parents=True, exist_ok=True)
    files = sorted(stream.glob("*.h5"))
    for f in files:
        rename(f, spool / f.name, fsync=False)
    return len(files)


def select_sets(args: argparse.Namespace, out: Path, model: Path) -> list[str]:
    sets = [
        "model.invariance=group",
        "selector.embedding=model", f"selector.model_dir={model}",
        f"selector.model_updates_dir={out / 'model-updates'}",
        f"selector.drift.window={args.window}",
        f"selector.retrain.reservoir_per_class={args.reservoir_per_class}",
        "selector.retrain.on_drift=true",
        f"selector.retrain.after_drift_arrivals={args.after_drift}",
        "selector.retrain.submit=true", f"selector.retrain.tasks={args.tasks}",
        "selector.retrain.train_overrides=" + json.dumps(
            [f"train.finetune_epochs={args.finetune_epochs}",
             f"train.finetune_learning_rates={args.finetune_lrs}",
             f"train.finetune_lr_boundaries=[{args.finetune_switch}]",
             f"train.num_threads={args.threads}"]),
        f"selector.files_per_poll={args.files_per_poll}",
        f"jobs.slots={args.slots}", "jobs.duration_us=0.2", "train.device=cpu",
    ]
    return [x for s in sets for x in ("--set", s)]


def select_round(base: list[str], out: Path, sets: list[str], label: str) -> None:
    done = out / "rounds" / f"{label}.done"
    if done.exists():
        return
    mummi("select", *base, *sets, "--once",
          "--state-dir", str(out / "selector"), "--spool", str(out / "spool"))
    done.parent.mkdir(exist_ok=True)
    done.touch()


def wait_for_retraining(jobs_cfg: JobsConfig, out: Path, timeout_s: float) -> dict:
    """The selector's first retraining job (STATE/retrain.jsonl), waited for through the jobs
    backend of ``jobs_cfg`` (the config's ``jobs`` section)."""
    from mummi_ml.backends import make_backend
    from mummi_ml.errors import MummiMLError
    from mummi_ml.selector.loop import read_retrain_log
    from mummi_ml.selector.loop import wait_for_retraining as wait

    state = out / "selector"
    jobs = read_retrain_log(state)
    if not jobs:
        sys.exit(f"closed_loop_run: no retraining was submitted: no drift event, or its "
                 f"snapshot still waits for arrivals (see {state}/drift.jsonl and status.json); "
                 "lower --after-drift")
    try:
        wait(make_backend(jobs_cfg, state), jobs[0], time.monotonic() + timeout_s, poll_s=5.0)
    except MummiMLError as exc:
        sys.exit(f"closed_loop_run: {exc} (see {state}/retrain/)")
    return jobs[0]


def evaluate(base: list[str], science: Path, out: Path, model: Path, name: str,
             points: int) -> dict:
    dst = out / f"eval_{name}"
    if not (dst / "metrics.json").exists():
        mummi("evaluate", *base, "--no-progress", "--no-baselines",
              "--set", f"evaluate.n_points={points}", "--set", "evaluate.tsne_points=1000",
              "--model", str(model), "--data", str(science / "heldout.h5"),
              "--campaign", str(science / "campaign.h5"), "--out", str(dst))
    return json.loads((dst / "metrics.json").read_text())


def ours(rows: list[dict]) -> dict:
    [row] = [r for r in rows if r["kind"] == "model"]
    return {k: row[k] for k in ("overlap_percent", "mare_star", "auc", "n_points")}


def upsilon_scale(model: Path, data: Path, n: int = 2000) -> float:
    """Median pairwise d_Upsilon (the unit of MARE*) over ``n`` evenly spaced patches of
    ``data``, Upsilon of patches standardised with ``model``'s statistics (as evaluation)."""
    import numpy as np
    import torch

    from mummi_ml.metric.model_dir import Metric
    from mummi_ml.patch import PatchDataset
    from mummi_ml.patch.profiles import radial_profiles

    metric = Metric.load(model, device="cpu")
    with PatchDataset(data) as ds:
        x = ds[np.unique(np.linspace(0, len(ds) - 1, n).round().astype(np.int64))].x
    u = torch.as_tensor(radial_profiles(metric.stats.standardise(x), metric.profile_channels))
    return float(torch.pdist(u.double()).median())


def train_seconds(model: Path) -> float:
    """Sum of the epochs' wall times in ``train_log.csv`` (s)."""
    import csv

    with open(model / "train_log.csv") as f:
        return round(sum(float(r["seconds"]) for r in csv.DictReader(f)), 1)


def selector_figures(out: Path) -> dict:
    """Drift, snapshot, swap and accounting figures from the selector's state directory."""
    state = out / "selector"
    drift = [json.loads(x) for x in (state / "drift.jsonl").read_text().splitlines()]
    events = [d for d in drift if d["event"]]
    snap = json.loads((state / "snapshots" / "0000" / "snapshot.json").read_text())
    picks = [json.loads(x) for x in (state / "picks.jsonl").read_text().splitlines()]
    status = json.loads((state / "status.json").read_text())
    return {
        "windows": len(drift),
        "first_event": events[0] if events else None,
        "arrivals_before_event": sum(d["n"] for d in drift[: drift.index(events[0]) + 1])
        if events else None,
        "snapshot": {k: snap.get(k) for k in ("reasons", "n_reservoir", "n_selected", "seen")},
        "swaps": [p for p in picks if p.get("event") == "model_swap"],
        "picks_by_model": {v: sum(1 for p in picks if "id" in p and p.get("model_version") == v)
                           for v in {p.get("model_version") for p in picks if "id" in p}},
        "model_versions": status.get("model_versions"),
        "accounting": {k: status.get(k) for k in ("ingested", "pooled", "selected", "evicted",
                                                  "quarantined")},
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--science", type=Path, default=REPO / "runs" / "science",
                    help="the science run's directory (benchmarks/science_run.sh)")
    ap.add_argument("--out", type=Path, default=None, help="default: SCIENCE/closed_loop")
    ap.add_argument("--config", type=Path, default=CONFIG,
                    help="the config of coupler, selector, retraining and evaluation (default: "
                    "the science run's configs/paper.yaml)")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                    help="config override for every step (repeatable)")
    ap.add_argument("--request-if-no-event", action="store_true",
                    help="without a drift event in round 2, request the retraining as an "
                    "operator (STATE/RETRAIN); for small smoke runs")
    ap.add_argument("--pre-patches", type=int, default=4000, help="round 1 (pre-campaign)")
    ap.add_argument("--campaign-patches", type=int, default=24000,
                    help="round 2 (campaign preset; campaign.h5's length: 24000)")
    ap.add_argument("--window", type=int, default=1000, help="selector.drift.window")
    ap.add_argument("--after-drift", type=int, default=16000,
                    help="selector.retrain.after_drift_arrivals")
    ap.add_argument("--reservoir-per-class", type=int, default=2500)
    ap.add_argument("--finetune-epochs", type=int, default=48, help="epochs of the retraining")
    ap.add_argument("--finetune-switch", type=int, default=40,
                    help="epoch after which the retraining's learning rate switches")
    ap.add_argument("--finetune-lrs", default="[1.0e-3,1.0e-4]",
                    help="train.finetune_learning_rates of the retraining")
    ap.add_argument("--files-per-poll", type=int, default=2,
                    help="selector.files_per_poll: 2 files of 500 = one window per iteration")
    ap.add_argument("--tasks", type=int, default=2,
                    help="selector.retrain.tasks: MPI ranks of the (data-parallel) retraining")
    ap.add_argument("--threads", type=int, default=1,
                    help="train.num_threads of each retraining rank")
    ap.add_argument("--slots", type=int, default=4, help="jobs.slots (stand-in MD jobs)")
    ap.add_argument("--eval-points", type=int, default=20000)
    args = ap.parse_args()
    science = args.science.resolve()
    missing = [name for name in ("group_all/weights.pt", "group_all/metric.json", "heldout.h5",
                                 "campaign.h5") if not (science / name).is_file()]
    if not (glob.glob(str(science / "train.rank*.h5")) or (science / "train.h5").is_file()):
        missing.append("train.rank*.h5 or train.h5")
    if missing:
        print(f"closed_loop_run: {science} is not a science run's directory (missing "
              f"{', '.join(missing)}; make it with benchmarks/science_run.sh)", file=sys.stderr)
        return 2
    out = (args.out or science / "closed_loop").resolve()
    out.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}
    t = time.perf_counter()
    pre_model = prepare_pre_model(science, out)
    timings["prepare_pre_model"] = round(time.perf_counter() - t, 1)
    base = ["--config", str(args.config), *(x for kv in args.overrides for x in ("--set", kv))]
    timed(timings, "couple_pre", couple, base, out, "stream_pre", "pre-campaign", 3004, 301,
          args.pre_patches)
    timed(timings, "couple_campaign", couple, base, out, "stream_campaign", "campaign", 3003, 300,
          args.campaign_patches)
    sets = select_sets(args, out, pre_model)
    feed(out / "stream_pre", out / "spool")
    from mummi_ml.selector.loop import read_retrain_log

    timed(timings, "select_round1_pre", select_round, base, out, sets, "round1")
    feed(out / "stream_campaign", out / "spool")
    timed(timings, "select_round2_campaign", select_round, base, out, sets, "round2")
    if args.request_if_no_event and not read_retrain_log(out / "selector"):
        log("no retraining after round 2: requesting one as an operator would (STATE/RETRAIN)")
        (out / "selector" / "RETRAIN").touch()
        timed(timings, "select_round2_request", select_round, base, out, sets, "round2b")
    t = time.perf_counter()
    from mummi_ml.config import load_config

    jobs_cfg = load_config(args.config, args.overrides).jobs
    job = wait_for_retraining(jobs_cfg, out, timeout_s=4 * 3600)
    timings["wait_for_retraining"] = round(time.perf_counter() - t, 1)
    timed(timings, "select_round3_swap", select_round, base, out, sets, "round3")
    retrained = Path(job["out"])
    t = time.perf_counter()
    before = evaluate(base, science, out, pre_model, "pre_model", args.eval_points)
    after = evaluate(base, science, out, retrained, "retrained", args.eval_points)
    timings["evaluate"] = round(time.perf_counter() - t, 1)
    pre = ours(before["table"])
    figures = {
        "pre_campaign": pre,
        "campaign_before_swap": ours(before["campaign"]["table"]),
        "campaign_after_swap": ours(after["campaign"]["table"]),
        "pre_campaign_after_swap": ours(after["table"]),
    }
    a = figures["campaign_after_swap"]
    goal = {k: {"after": a[k], "pre": pre[k],
                "within_20pct": abs(a[k] - pre[k]) <= GOAL * abs(pre[k]) or (
                    k == "overlap_percent" and abs(a[k] - pre[k]) < OVERLAP_RESOLUTION)}
            for k in ("overlap_percent", "mare_star", "auc")}
    scale = {"pre_campaign": upsilon_scale(pre_model, science / "heldout.h5"),
             "campaign": upsilon_scale(pre_model, science / "campaign.h5")}
    for key, data in (("pre_campaign", "pre_campaign"), ("campaign_before_swap", "campaign"),
                      ("campaign_after_swap", "campaign"), ("pre_campaign_after_swap",
                                                            "pre_campaign")):
        figures[key]["mare_star_over_median_d_upsilon"] = figures[key]["mare_star"] / scale[data]
    meta = json.loads((retrained / "metric.json").read_text())
    result = {
        "science": str(science), "out": str(out), "args": {
            k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "models": {"pre": before["model"]["version"], "retrained": after["model"]["version"],
                   "retrained_parent": meta.get("parent", {}).get("version"),
                   "retraining_epochs": meta.get("epochs_trained"),
                   "retraining_ranks": meta.get("world_size"),
                   "retraining_train_seconds": train_seconds(retrained)},
        "median_d_upsilon": scale, "figures": figures, "goal": goal,
        "selector": selector_figures(out),
        "timings_s": timings,
    }
    text = json.dumps(result, indent=1, default=str)
    (out / "closed_loop.json").write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
