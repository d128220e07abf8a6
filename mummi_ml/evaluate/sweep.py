"""Hyperparameter sweeps and ablations: plan the runs, train and evaluate them spread over MPI
ranks, collect every model's criteria, draw the parallel-coordinates plot (the paper's Figure 4)
and pick the model with the best balance.

Rank r of R trains runs r, r + R, r + 2R, ... (each an independent single-process training);
results are files (``runs/<name>/criteria.json``), so a sweep can be restarted and only the
missing runs are trained. Rank 0 collects after a barrier. ``comm=None`` and no MPI launcher
means one rank; mpi4py is imported only when needed.

Selection rule (documented in docs/evaluation.md): candidates are the models trained with all
three losses (all of them if there is none); each criterion is turned into a normalised rank in
[0, 1] among the candidates (0 best; ties share their mean rank): overlap % (lower better),
MARE* (lower better), AUC (higher better) with weight 1 each and the latent dimension (lower
better) with weight ``dim_weight``; the model with the smallest weighted mean rank is chosen,
ties broken by smaller dimension, then lower overlap, then name.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mummi_ml.durable import atomic_path, write_json_atomic
from mummi_ml.evaluate.errors import EvaluationError

__all__ = [
    "SweepRun",
    "ABLATIONS",
    "plan_runs",
    "runs_of_rank",
    "apply_overrides",
    "selection_scores",
    "select_model",
    "run_sweep",
    "collect_sweep",
    "plot_parallel_coordinates",
]

#: loss subsets trained as ablations: name -> weights kept (the others set to 0)
ABLATIONS = {
    "L_inv": ("w_inv",),
    "L_rad": ("w_rad",),
    "L_lab": ("w_lab",),
    "L_inv+L_rad": ("w_inv", "w_rad"),
    "L_inv+L_lab": ("w_inv", "w_lab"),
    "L_rad+L_lab": ("w_rad", "w_lab"),
}
_WEIGHTS = ("w_inv", "w_rad", "w_lab")


@dataclass(frozen=True)
class SweepRun:
    """One model of a sweep: ``name`` (directory name) and dotted-key ``overrides``."""

    name: str
    overrides: dict[str, Any] = field(default_factory=dict)
    kind: str = "model"  # "model" or "ablation"


def _fmt(v: Any) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


def plan_runs(sweep_cfg) -> list[SweepRun]:
    """The runs of a sweep (deterministic): the grid or a random sample of it, then the
    ablations of the base config."""
    keys = sorted(sweep_cfg.parameters)
    combos = list(itertools.product(*(sweep_cfg.parameters[k] for k in keys)))
    if sweep_cfg.mode == "random" and len(combos) > sweep_cfg.n_samples:
        rng = np.random.default_rng(sweep_cfg.seed)
        pick = np.sort(rng.choice(len(combos), size=sweep_cfg.n_samples, replace=False))
        combos = [combos[i] for i in pick]
    runs = []
    for combo in combos:
        ov = dict(zip(keys, combo, strict=True))
        name = "_".join(f"{k.split('.')[-1]}={_fmt(v)}" for k, v in ov.items()) or "base"
        runs.append(SweepRun(name, ov))
    if sweep_cfg.ablations:
        for name, kept in ABLATIONS.items():
            ov = {f"loss.{w}": 0.0 for w in _WEIGHTS if w not in kept}
            runs.append(SweepRun(f"ablation_{name}", ov, "ablation"))
    return runs


def runs_of_rank(runs: list[SweepRun], rank: int, size: int) -> list[SweepRun]:
    """Runs of one rank: r, r + R, r + 2R, ..."""
    return runs[rank::size]


def apply_overrides(cfg, overrides: dict[str, Any]):
    """A copy of the top-level config with dotted-key overrides, validated."""
    data = cfg.model_dump(mode="json")
    for key, value in overrides.items():
        section, _, name = key.partition(".")
        data[section][name] = value
    try:
        return type(cfg).model_validate(data)
    except ValueError as exc:
        raise EvaluationError(f"sweep overrides {overrides}: invalid config ({exc})") from None


def _rank_scores(values: np.ndarray, higher_better: bool = False) -> np.ndarray:
    """Normalised ranks in [0, 1] (0 best), ties sharing their mean rank."""
    from scipy.stats import rankdata

    v = -values if higher_better else values
    if len(v) < 2:
        return np.zeros(len(v))
    return (rankdata(v, method="average") - 1) / (len(v) - 1)


def selection_scores(rows: list[dict], dim_weight: float = 0.5) -> np.ndarray:
    """Weighted mean normalised rank of each row (lower is better); see the module doc."""
    ov = np.array([r["overlap_percent"] for r in rows], float)
    ms = np.array([r["mare_star"] for r in rows], float)
    auc = np.array([r["auc"] for r in rows], float)
    dim = np.array([r["dim"] for r in rows], float)
    total = (
        _rank_scores(ov)
        + _rank_scores(ms)
        + _rank_scores(auc, higher_better=True)
        + dim_weight * _rank_scores(dim)
    )
    return total / (3.0 + dim_weight)


def select_model(rows: list[dict], dim_weight: float = 0.5) -> tuple[int, np.ndarray]:
    """Index of the chosen row among ``rows`` (each with name, kind, overlap_percent,
    mare_star, auc, dim) and the scores of the candidates (NaN for non-candidates)."""
    if not rows:
        raise EvaluationError("sweep: no finished runs to select from")
    cand = [i for i, r in enumerate(rows) if r.get("kind") != "ablation"] or list(range(len(rows)))
    scores = np.full(len(rows), np.nan)
    scores[cand] = selection_scores([rows[i] for i in cand], dim_weight)
    best = min(
        cand,
        key=lambda i: (
            round(scores[i], 12),
            rows[i]["dim"],
            rows[i]["overlap_percent"],
            rows[i]["name"],
        ),
    )
    return best, scores


def _world(comm):
    """(comm, rank, size): the given communicator, MPI's COMM_WORLD under an MPI launcher
    (mpi4py imported lazily), or one rank."""
    if comm is None:
        from mummi_ml.parallel import detect_launch

        if detect_launch().size > 1:
            from mpi4py import MPI

            comm = MPI.COMM_WORLD
    if comm is None:
        return None, 0, 1
    return comm, comm.Get_rank(), comm.Get_size()


def _write_json(path: Path, data: Any) -> None:
    write_json_atomic(path, data, fsync=False, indent=1)


def _train_and_evaluate(
    cfg, run: SweepRun, data, eval_batch, out: Path, threads: int, progress: bool
) -> dict:
    """Train one run (single process, resumable), evaluate it on ``eval_batch`` against the
    radial profiles under its own standardisation, and write ``runs/<name>/criteria.json``."""
    from mummi_ml.evaluate.evaluation import evaluate_representation
    from mummi_ml.evaluate.representations import model_representation, upsilon_representation
    from mummi_ml.metric import Metric, train_model
    from mummi_ml.parallel import init_distributed

    rcfg = apply_overrides(cfg, run.overrides)
    if rcfg.train.num_threads == 0:
        rcfg = apply_overrides(rcfg, {"train.num_threads": threads})
    run_dir = out / "runs" / run.name
    ctx = init_distributed(rcfg.train.device, rcfg.train.num_threads, env={})  # one process
    try:
        train_model(
            rcfg.model,
            rcfg.loss,
            rcfg.train,
            data,
            run_dir,
            resume=True,
            progress=progress,
            ctx=ctx,
        )
    finally:
        ctx.close()
    metric = Metric.load(run_dir, device=rcfg.evaluate.device)
    upsilon = upsilon_representation(metric.stats, metric.profile_channels).embed(eval_batch.x)
    rep = model_representation(metric, run.name, run.kind)
    res = evaluate_representation(
        rep,
        eval_batch.x,
        eval_batch.classes,
        upsilon,
        rcfg.model.transform_group,
        rcfg.evaluate.device,
    )
    row = res.row.to_dict() | {"overrides": run.overrides, "model_dir": str(run_dir)}
    _write_json(run_dir / "criteria.json", row)
    return row


def run_sweep(
    cfg,
    data: list[str | Path],
    eval_data: str | Path,
    out_dir: str | Path,
    comm=None,
    progress: bool = True,
) -> dict | None:
    """Train and evaluate this rank's share of the runs of ``cfg.evaluate.sweep`` (runs whose
    criteria.json exists are skipped), then on rank 0 collect, plot and select.

    Returns:
        The summary (also ``sweep.json``) on rank 0, None on the other ranks.
    """
    from mummi_ml.evaluate.pipeline import load_eval_set

    scfg = cfg.evaluate.sweep
    out = Path(out_dir)
    comm, rank, size = _world(comm)
    runs = plan_runs(scfg)
    threads = max(1, (os.cpu_count() or 1) // size)
    (out / "runs").mkdir(parents=True, exist_ok=True)
    eval_batch = load_eval_set(eval_data, scfg.eval_points, cfg.evaluate.seed)
    failed = []
    for run in runs_of_rank(runs, rank, size):
        if (out / "runs" / run.name / "criteria.json").is_file():
            continue
        print(f"[sweep rank {rank}/{size}] training {run.name}", file=sys.stderr, flush=True)
        try:
            _train_and_evaluate(cfg, run, data, eval_batch, out, threads, progress and rank == 0)
        except Exception as exc:  # noqa: BLE001 - one bad run must not stop the sweep
            failed.append(run.name)
            print(
                f"[sweep rank {rank}/{size}] {run.name} failed: {type(exc).__name__}: {exc}",
                file=sys.stderr,
                flush=True,
            )
        _release_memory()  # each run caches its training split; give it back before the next
    if comm is not None:
        comm.Barrier()
    if rank != 0:
        return None
    return collect_sweep(out, runs, scfg.dim_weight)


def _release_memory() -> None:
    """Collect reference cycles and return freed heap pages to the OS (glibc)."""
    import ctypes
    import gc

    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc
        pass


_FLOAT_CRITERIA = ("overlap_percent", "tau", "mare", "mare_star", "lam", "auc", "seconds")


def collect_sweep(out: Path, runs: list[SweepRun], dim_weight: float = 0.5) -> dict:
    """Read every finished run's criteria, select, and write sweep.json, sweep.md and
    parallel_coordinates.png."""
    from mummi_ml.evaluate.table import TableRow, table_markdown

    rows, missing = [], []
    for run in runs:
        f = out / "runs" / run.name / "criteria.json"
        if f.is_file():
            row = json.loads(f.read_text())
            for k in _FLOAT_CRITERIA:  # strict JSON writes NaN as null: read it back as NaN
                if k in row and row[k] is None:
                    row[k] = math.nan
            rows.append(row)
        else:
            missing.append(run.name)
    best, scores = select_model(rows, dim_weight)
    for r, sc in zip(rows, scores, strict=True):
        r["selection_score"] = None if np.isnan(sc) else float(sc)
    summary = {
        "runs": rows,
        "missing": missing,
        "selected": rows[best]["name"],
        "selected_model_dir": rows[best]["model_dir"],
        "dim_weight": dim_weight,
        "rule": "min weighted mean normalised rank of overlap, MARE*, AUC (weight 1) and "
        "dim (weight dim_weight) among models trained with all three losses",
    }
    _write_json(out / "sweep.json", summary)
    keys = [f for f in TableRow.__dataclass_fields__]
    md = table_markdown(
        [TableRow(**{k: r[k] for k in keys}) for r in rows],
        f"Sweep: {len(rows)} models (selected: {rows[best]['name']})",
    )
    (out / "sweep.md").write_text(md)
    plot_parallel_coordinates(rows, best, out / "parallel_coordinates.png")
    return summary


def plot_parallel_coordinates(rows: list[dict], best: int, path: Path) -> Path:
    """The paper's Figure 4: one line per model across axes of the varied hyperparameters and
    the criteria (overlap %, MARE*, AUC, dim); the selected model in black, ablations dashed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    varied = sorted(
        {k for r in rows for k in r.get("overrides", {}) if not k.startswith("loss.w_")}
    )
    axes = [
        (k.split(".")[-1], [r.get("overrides", {}).get(k, np.nan) for r in rows]) for k in varied
    ]
    axes += [
        ("overlap %", [r["overlap_percent"] for r in rows]),
        ("MARE*", [r["mare_star"] for r in rows]),
        ("AUC", [r["auc"] for r in rows]),
        ("dim", [r["dim"] for r in rows]),
    ]
    vals = np.array([np.asarray(v, float) for _, v in axes])  # [A, M]
    lo, hi = np.nanmin(vals, 1, keepdims=True), np.nanmax(vals, 1, keepdims=True)
    norm = (vals - lo) / np.where(hi > lo, hi - lo, 1.0)
    fig, ax = plt.subplots(figsize=(1.6 * len(axes) + 2, 4.5))
    xs = np.arange(len(axes))
    for m, r in enumerate(rows):
        if m == best:
            continue
        ax.plot(
            xs,
            norm[:, m],
            color="C0" if r.get("kind") != "ablation" else "C3",
            ls="--" if r.get("kind") == "ablation" else "-",
            alpha=0.6,
            lw=1,
        )
    ax.plot(xs, norm[:, best], color="k", lw=3, label=f"selected: {rows[best]['name']}")
    for i in range(len(axes)):
        ax.axvline(i, color="0.6", lw=0.8)
        ax.text(i, -0.07, f"{lo[i, 0]:.3g}", ha="center", va="top", fontsize=7)
        ax.text(i, 1.04, f"{hi[i, 0]:.3g}", ha="center", va="bottom", fontsize=7)
    ax.set_xticks(xs, [n for n, _ in axes])
    ax.set(yticks=[], ylim=(-0.15, 1.12), title=f"{len(rows)} models (dashed red: ablations)")
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    try:
        with atomic_path(path, fsync=False) as tmp:  # no *.png glob matches the temporary
            fig.savefig(tmp, dpi=100, format="png")
    finally:
        plt.close(fig)
    return path
