"""``run_evaluation``: everything ``mummi-ml evaluate`` writes (metrics.json, table.md/json,
figures, report.html) for one model, its baselines and ablations, optional campaign data
(distribution shift) and dense histories (time), plus same-frame pairs of the data (space)."""

from __future__ import annotations

import csv
import math
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from mummi_ml import __version__
from mummi_ml.durable import write_json_atomic
from mummi_ml.evaluate.config import EvaluateConfig
from mummi_ml.evaluate.errors import EvaluationError
from mummi_ml.evaluate.evaluation import embed_all, evaluate_representation
from mummi_ml.evaluate.figures import (
    plot_distance_histograms,
    plot_mu_densities,
    plot_pair_density,
    plot_pr_curves,
    plot_space_curve,
    plot_time_curve,
    plot_tsne,
)
from mummi_ml.evaluate.histograms import pair_histogram_2d
from mummi_ml.evaluate.report import Figure, write_report
from mummi_ml.evaluate.representations import (
    Representation,
    image_representation,
    model_representation,
    mu_representation,
    upsilon_representation,
)
from mummi_ml.evaluate.spacetime import (
    centre_distance_curve,
    compare_times,
    diffusive_decorrelation_time,
    fit_decorrelation,
    time_difference_curve,
)
from mummi_ml.evaluate.table import TableRow, table_markdown
from mummi_ml.patch import CLASS_NAMES, PatchBatch, mean_concentrations, open_patches

__all__ = ["load_eval_set", "run_evaluation", "METRICS_FORMAT"]

METRICS_FORMAT = 1


def _log(msg: str, enabled: bool) -> None:
    if enabled:
        print(f"[evaluate {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def load_eval_set(path: str | Path, n_points: int, seed: int) -> PatchBatch:
    """A random subset of ``n_points`` patches (all if fewer) of a patch file, in file order."""
    with open_patches(path) as ds:
        n = len(ds)
        if n < 2:
            raise EvaluationError(f"{path}: expected at least 2 patches, got {n}")
        rng = np.random.default_rng(seed)
        idx = np.sort(rng.choice(n, size=min(n_points, n), replace=False))
        return ds[idx]


def _class_names() -> dict[int, str]:
    return {i: name for i, name in enumerate(CLASS_NAMES)}


def _group(cfg: EvaluateConfig, metric) -> str:
    if cfg.transform_group != "model":
        return cfg.transform_group
    return str(metric.config.get("model", {}).get("transform_group", "paper"))


def _evaluate_set(reps, batch: PatchBatch, metric, cfg, group, log) -> list:
    x, classes = batch.x, batch.classes
    upsilon = upsilon_representation(metric.stats, metric.profile_channels).embed(x)
    results = []
    for rep in reps:
        xs, cs, us = x, classes, upsilon
        if rep.dim > 1000 and len(x) > cfg.images_max_points:
            m = cfg.images_max_points
            xs, cs, us = x[:m], classes[:m], upsilon[:m]
        log(f"{rep.name}: {len(xs):,} points, {len(xs) * (len(xs) - 1) // 2:,} pairs")
        results.append(evaluate_representation(rep, xs, cs, us, group, cfg.device))
        r = results[-1].row
        log(
            f"  overlap {r.overlap_percent:.3f}%  MARE* {r.mare_star:.3f}  AUC {r.auc:.3f}"
            f"  ({r.seconds:.1f} s)"
        )
    return results, upsilon


def _training_curves(model_dir: Path, out: Path) -> Path | None:
    log_path = model_dir / "train_log.csv"
    if not log_path.is_file():
        return None
    from mummi_ml.metric.history import plot_curves

    with open(log_path, newline="") as fh:
        rows = [
            {k: float(v) if v not in ("", None) else math.nan for k, v in r.items()}
            for r in csv.DictReader(fh)
        ]
    if not rows:
        return None
    try:
        plot_curves(out, rows)
    except KeyError:
        return None
    return out


def _json_default(o: Any):
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(type(o).__name__)


def _write_json(path: Path, data: Any) -> None:
    write_json_atomic(path, data, fsync=False, indent=1, default=_json_default)


def run_evaluation(
    model_dir: str | Path,
    data: str | Path,
    out_dir: str | Path,
    cfg: EvaluateConfig | None = None,
    campaign: str | Path | None = None,
    histories: str | Path | None = None,
    ablations: dict[str, str | Path] | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Evaluate a model directory and write the report into ``out_dir``.

    Args:
        model_dir: trained metric (``Metric.load``).
        data: held-out pre-campaign patch file(s) (not the training data).
        out_dir: output directory (created): metrics.json, table.md, table.json, *.png,
            report.html.
        cfg: the ``evaluate:`` section.
        campaign: campaign-preset patch file: the same criteria under distribution shift.
        histories: dense single-protein histories (``simulate --histories``): d_z vs time.
        ablations: ``{row name: model dir}`` of further models (e.g. trained with loss weights
            set to 0), evaluated like the main model.
        progress: log each stage to stderr.

    Returns:
        The content of metrics.json.
    """
    from mummi_ml.metric import Metric

    cfg = cfg or EvaluateConfig()
    if histories is not None:  # checked before hours of work, not after
        with open_patches(histories) as ds:
            kind = ds.attrs.get("kind")
        if kind != "histories":
            raise EvaluationError(
                f"--histories {histories}: not a histories file (kind={kind!r}); write one "
                "with `mummi-ml simulate --histories K`"
            )
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    log = lambda m: _log(m, progress)  # noqa: E731
    metric = Metric.load(model_dir, device=cfg.device)
    group = _group(cfg, metric)
    names = _class_names()
    batch = load_eval_set(data, cfg.n_points, cfg.seed)
    log(f"model {model_dir} (d = {metric.latent_dim}), {len(batch):,} patches of {data}")

    main = model_representation(metric, "L_inv + L_rad + L_lab (ours)")
    reps: list[Representation] = []
    if cfg.baselines:
        reps += [
            image_representation(metric.stats),
            mu_representation(),
            upsilon_representation(metric.stats, metric.profile_channels),
        ]
    for name, path in (ablations or {}).items():
        reps.append(model_representation(Metric.load(path, device=cfg.device), name, "ablation"))
    reps.append(main)
    results, upsilon = _evaluate_set(reps, batch, metric, cfg, group, log)
    rows: list[TableRow] = [r.row for r in results]
    ours = results[-1]
    figures: list[Figure] = []
    notes = [
        "MARE uses the model's own lambda_rad; for baselines and models trained without L_rad, "
        "lambda is the least-squares slope of d on d_Upsilon through the origin over all pairs "
        "(column 'lambda', marked 'fit').",
        f"Overlap uses the '{group}' transformations; for a baseline the transformed point is "
        "the feature of the transformed patch.",
    ]
    if cfg.baselines and len(batch) > cfg.images_max_points:
        notes.append(
            f"The image baseline is evaluated on the first {cfg.images_max_points:,} "
            f"of the {len(batch):,} points (evaluate.images_max_points)."
        )

    log("figures: t-SNE, histograms, PR curves")
    classes = batch.classes
    figures.append(
        Figure(
            plot_tsne(ours.z, classes, names, out / "tsne.png", cfg.tsne_points, cfg.seed),
            f"2-D t-SNE of z (ours) on {min(cfg.tsne_points, len(batch)):,} of the "
            "evaluation patches, coloured by class.",
        )
    )
    h_zu = pair_histogram_2d(upsilon, ours.z, (cfg.histogram_bins,) * 2, cfg.device)
    figures.append(
        Figure(
            plot_distance_histograms(
                h_zu.y_marginal,
                h_zu.y_edges,
                ours.inv_dist,
                ours.transforms,
                ours.row.tau,
                out / "distance_histograms.png",
            ),
            f"Distribution of d_z over all {ours.row.n_points * (ours.row.n_points - 1) // 2:,} "
            f"pairs (grey) and of d_z(x, rho(x)) for each transformation; tau (dashed) is the "
            f"largest transformation distance; overlap = {ours.row.overlap_percent:.3f}% of pairs "
            "fall at or below it.",
        )
    )
    figures.append(
        Figure(
            plot_pair_density(h_zu, ours.row.lam, out / "dz_vs_dupsilon.png"),
            f"d_z against d_Upsilon over all pairs (log density), the line d_z = lambda d_Upsilon "
            f"(lambda = {ours.row.lam:.3g}) and the running mean ± std of d_z; MARE = "
            f"{ours.row.mare:.3f} (units of d_z), MARE* = {ours.row.mare_star:.3f}.",
        )
    )
    figures.append(
        Figure(
            plot_pr_curves(ours.pr, names, out / "precision_recall.png"),
            "Left: precision, recall and accuracy against neighbourhood size k, averaged over all "
            "queries (thick) and per query class (thin). Right: the mean precision-recall curve; "
            f"AUC = {ours.row.auc:.3f}. Tied neighbours count in expectation over their order.",
        )
    )
    tc = _training_curves(Path(model_dir), out / "training_curves.png")
    if tc:
        figures.append(
            Figure(
                tc,
                "Training curves from the model's train_log.csv: loss terms "
                "(train solid, validation dashed), validation overlap and MARE.",
            )
        )

    metrics: dict[str, Any] = {
        "format": METRICS_FORMAT,
        "created_by": f"mummi-ml {__version__} evaluate",
        "model": {
            "path": str(model_dir),
            "version": metric.version,
            "latent_dim": metric.latent_dim,
            "lambda_rad": metric.lambda_rad,
        },
        "data": {
            "path": str(data),
            "n_points": len(batch),
            "seed": cfg.seed,
            "class_counts": np.bincount(classes, minlength=len(CLASS_NAMES)).tolist(),
        },
        "transform_group": group,
        "table": [r.to_dict() for r in rows],
        "pr_curve_ours": _decimate_pr(ours.pr),
        "notes": notes,
    }

    mu_panels = [
        (
            "pre-campaign",
            pair_histogram_2d(
                mean_concentrations(batch.x), ours.z, (cfg.histogram_bins,) * 2, cfg.device
            ),
        )
    ]
    if campaign is not None:
        cbatch = load_eval_set(campaign, cfg.n_points, cfg.seed)
        log(f"campaign: {len(cbatch):,} patches of {campaign}")
        creps = (
            [mu_representation(), upsilon_representation(metric.stats, metric.profile_channels)]
            if cfg.baselines
            else []
        ) + [main]
        cres, _ = _evaluate_set(creps, cbatch, metric, cfg, group, log)
        metrics["campaign"] = {
            "path": str(campaign),
            "n_points": len(cbatch),
            "table": [r.row.to_dict() for r in cres],
        }
        mu_panels.append(
            (
                "campaign",
                pair_histogram_2d(
                    mean_concentrations(cbatch.x), cres[-1].z, (cfg.histogram_bins,) * 2, cfg.device
                ),
            )
        )
    figures.append(
        Figure(
            plot_mu_densities(mu_panels, out / "dz_vs_dmu.png"),
            "d_z against the distance between mean-concentration vectors d_mu over "
            "all pairs, "
            + " and ".join(t for t, _ in mu_panels)
            + " (the paper's Figure 6): log density, running mean ± std.",
        )
    )

    diffusive = diffusive_decorrelation_time(cfg.patch_length_nm, cfg.diffusion_nm2_per_us)
    if histories is not None:
        log(f"time: histories {histories}")
        with open_patches(histories) as ds:
            hb = ds.read()
        hb = hb.subset(np.flatnonzero(hb.protein_id >= 0))
        hz = embed_all(main, hb.x)
        curve = time_difference_curve(hz, hb.protein_id, hb.time_us)
        fit = fit_decorrelation(curve, diffusive)
        # ground truth: the same curve and fit for the patches themselves (standardised images)
        gt_curve = time_difference_curve(
            image_representation(metric.stats).embed(hb.x), hb.protein_id, hb.time_us
        )
        gt_fit = fit_decorrelation(gt_curve, diffusive)
        cmp = compare_times(fit, gt_fit)
        metrics["time"] = {
            "path": str(histories),
            "n_patches": len(hb),
            "n_histories": int(len(np.unique(hb.protein_id))),
            "diffusive_us": diffusive,
            "fit": fit.to_dict(),
            "curve": curve.to_dict(),
            "ground_truth": {
                "distance": "l2 of the standardised patches (d_x)",
                "fit": gt_fit.to_dict(),
                "curve": gt_curve.to_dict(),
            },
            "ratio_to_ground_truth": cmp.ratio,
            "ratio_reason": cmp.reason,
        }
        log(f"time: d_z {fit.describe()}, d_x {gt_fit.describe()}, diffusive {diffusive:.3g} us")
        ratio = f"{cmp.ratio:.2f}" if cmp.ratio is not None else f"none: {cmp.reason}"
        figures.append(
            Figure(
                plot_time_curve(curve, fit, out / "dz_vs_time.png", gt_curve, gt_fit),
                f"Distance between two patches of one protein's history against the time "
                f"between them (mean ± std over {len(curve.x)} time differences): d_z of the "
                f"metric (left) and d_x, the l2 distance of the standardised patches "
                f"themselves (right, the ground truth), each with the fit "
                f"a + b(1 - exp(-t/tau)). Decorrelation time of d_z: {fit.describe()}; of "
                f"d_x: {gt_fit.describe()}; ratio {ratio}. Diffusive estimate "
                f"L^2/(D (2 pi)^2) = {diffusive:.3g} us (marked only when inside the "
                f"sampled range).",
            )
        )
    space = _space(data, main, cfg, log)
    if space is not None:
        curve, dist, dz, info = space
        metrics["space"] = info | {"curve": curve.to_dict()}
        figures.append(
            Figure(
                plot_space_curve(
                    curve, dist, dz, out / "dz_vs_centre_distance.png", cfg.patch_length_nm / 2
                ),
                f"d_z against the distance between patch centres for pairs of "
                f"patches of the same frame ({info['n_pairs']:,} pairs in "
                f"{info['n_frames']} frames); Pearson r = "
                f"{info['pearson_below_half_patch']:.2f} below "
                f"{cfg.patch_length_nm / 2:g} nm and "
                f"{info['pearson_above_half_patch']:.2f} above.",
            )
        )

    metrics["seconds"] = time.perf_counter() - t_start
    md = table_markdown(rows, f"Pre-campaign ({len(batch):,} points)")
    if "campaign" in metrics:
        md += "\n" + table_markdown(
            [TableRow(**r) for r in metrics["campaign"]["table"]],
            f"Campaign ({metrics['campaign']['n_points']:,} points)",
        )
    (out / "table.md").write_text(md + "\n" + "\n".join(f"- {n}" for n in notes) + "\n")
    _write_json(
        out / "table.json",
        {"pre_campaign": metrics["table"], "campaign": metrics.get("campaign", {}).get("table")},
    )
    _write_json(out / "metrics.json", metrics)
    write_report(out / "report.html", metrics, md, figures)
    log(f"wrote {out}/report.html ({metrics['seconds']:.0f} s)")
    return metrics


def _decimate_pr(pr, n: int = 200) -> dict[str, list[float]]:
    """The mean curves at ~n log-spaced neighbourhood sizes (for metrics.json)."""
    idx = np.unique(np.geomspace(1, len(pr.k), n).astype(int) - 1)
    return {
        "k": pr.k[idx].tolist(),
        "precision": pr.precision[idx].tolist(),
        "recall": pr.recall[idx].tolist(),
        "accuracy": pr.accuracy[idx].tolist(),
    }


def _space(data, rep: Representation, cfg: EvaluateConfig, log):
    """Same-frame pairs of the data file: d_z vs centre distance (None if no frame has two
    patches)."""
    with open_patches(data) as ds:
        replica, t = ds.field("replica"), ds.field("time_us")
        domain = ds.attrs.get("domain_nm")
        frame_key = np.unique(
            np.stack([replica.astype(np.float64), t], 1), axis=0, return_inverse=True
        )[1].reshape(-1)
        sizes = np.bincount(frame_key)
        good = np.flatnonzero(sizes >= 2)
        if len(good) == 0:
            return None
        rng = np.random.default_rng(cfg.seed)
        chosen = rng.choice(good, size=min(cfg.space_frames, len(good)), replace=False)
        idx = np.flatnonzero(np.isin(frame_key, chosen))
        b = ds[idx]
    log(f"space: {len(chosen)} frames, {len(idx):,} patches")
    z = embed_all(rep, b.x)
    curve, dist, dz = centre_distance_curve(
        z, b.centre_nm, frame_key[idx], float(domain) if domain else None, cfg.space_bin_nm
    )
    half = cfg.patch_length_nm / 2

    def pearson(m):
        return float(np.corrcoef(dist[m], dz[m])[0, 1]) if m.sum() > 2 else math.nan

    info = {
        "n_frames": int(len(chosen)),
        "n_pairs": int(len(dist)),
        "domain_nm": float(domain) if domain else None,
        "pearson_below_half_patch": pearson(dist < half),
        "pearson_above_half_patch": pearson(dist >= half),
    }
    return curve, dist, dz, info
