"""The figure stage of ``mummi-ml evaluate``: each figure of the report drawn from the result
(:class:`~mummi_ml.evaluate.result.EvaluationResult`) and the arrays it needs, with its caption
beside it. Each function writes one PNG into ``out`` and returns it as a captioned
:class:`~mummi_ml.evaluate.report.Figure`, or None when its data is absent."""

from __future__ import annotations

import csv
import math
from collections.abc import Callable
from pathlib import Path

from mummi_ml.evaluate.compute import EvaluationArrays
from mummi_ml.evaluate.config import EvaluateConfig
from mummi_ml.evaluate.figures import (
    plot_distance_histograms,
    plot_mu_densities,
    plot_pair_density,
    plot_pr_curves,
    plot_space_curve,
    plot_time_curve,
    plot_tsne,
)
from mummi_ml.evaluate.report import Figure
from mummi_ml.evaluate.result import EvaluationResult
from mummi_ml.patch import CLASS_NAMES

__all__ = [
    "FIGURES",
    "draw_figures",
    "tsne_figure",
    "distance_histograms_figure",
    "pair_density_figure",
    "pr_curves_figure",
    "training_curves_figure",
    "mu_densities_figure",
    "time_figure",
    "space_figure",
]

FigureFn = Callable[[EvaluationResult, EvaluationArrays, Path, EvaluateConfig], "Figure | None"]


def _class_names() -> dict[int, str]:
    return {i: name for i, name in enumerate(CLASS_NAMES)}


def tsne_figure(r: EvaluationResult, a: EvaluationArrays, out: Path, cfg: EvaluateConfig):
    """t-SNE of our points by class."""
    path = plot_tsne(a.ours.z, a.classes, _class_names(), out / "tsne.png", cfg.tsne_points,
                     cfg.seed)
    return Figure(path, f"2-D t-SNE of z (ours) on {min(cfg.tsne_points, r.data.n_points):,} "
                        "of the evaluation patches, coloured by class.")


def distance_histograms_figure(r: EvaluationResult, a: EvaluationArrays, out: Path,
                               cfg: EvaluateConfig):
    """d_z over all pairs against d_z to each transformation; tau marked."""
    ours, h = r.ours, a.pairs_upsilon
    path = plot_distance_histograms(h.y_marginal, h.y_edges, a.ours.inv_dist, a.ours.transforms,
                                    ours.tau, out / "distance_histograms.png")
    return Figure(
        path,
        f"Distribution of d_z over all {ours.n_points * (ours.n_points - 1) // 2:,} "
        f"pairs (grey) and of d_z(x, rho(x)) for each transformation; tau (dashed) is the "
        f"largest transformation distance; overlap = {ours.overlap_percent:.3f}% of pairs "
        "fall at or below it.",
    )


def pair_density_figure(r: EvaluationResult, a: EvaluationArrays, out: Path,
                        cfg: EvaluateConfig):
    """d_z against d_Upsilon over all pairs, with lambda."""
    ours = r.ours
    path = plot_pair_density(a.pairs_upsilon, ours.lam, out / "dz_vs_dupsilon.png")
    return Figure(
        path,
        f"d_z against d_Upsilon over all pairs (log density), the line d_z = lambda d_Upsilon "
        f"(lambda = {ours.lam:.3g}) and the running mean ± std of d_z; MARE = "
        f"{ours.mare:.3f} (units of d_z), MARE* = {ours.mare_star:.3f}.",
    )


def pr_curves_figure(r: EvaluationResult, a: EvaluationArrays, out: Path, cfg: EvaluateConfig):
    """Precision, recall and accuracy against k; the PR curve."""
    path = plot_pr_curves(a.ours.pr, _class_names(), out / "precision_recall.png")
    return Figure(
        path,
        "Left: precision, recall and accuracy against neighbourhood size k, averaged over all "
        "queries (thick) and per query class (thin). Right: the mean precision-recall curve; "
        f"AUC = {r.ours.auc:.3f}. Tied neighbours count in expectation over their order.",
    )


def _read_train_log(log_path: Path) -> list[dict[str, float]]:
    """The rows of a train_log.csv as floats (empty cells: NaN)."""
    with open(log_path, newline="") as fh:
        return [
            {k: float(v) if v not in ("", None) else math.nan for k, v in row.items()}
            for row in csv.DictReader(fh)
        ]


def training_curves_figure(r: EvaluationResult, a: EvaluationArrays, out: Path,
                           cfg: EvaluateConfig):
    """The model directory's train_log.csv, if it has one with the usual columns."""
    from mummi_ml.metric.history import plot_curves

    log_path = Path(r.model.path) / "train_log.csv"
    rows = _read_train_log(log_path) if log_path.is_file() else []
    if not rows:
        return None
    try:
        plot_curves(out / "training_curves.png", rows)
    except KeyError:
        return None
    return Figure(out / "training_curves.png",
                  "Training curves from the model's train_log.csv: loss terms "
                  "(train solid, validation dashed), validation overlap and MARE.")


def mu_densities_figure(r: EvaluationResult, a: EvaluationArrays, out: Path,
                        cfg: EvaluateConfig):
    """The paper's Figure 6: d_z against d_mu, pre-campaign (and campaign)."""
    path = plot_mu_densities(a.mu_panels, out / "dz_vs_dmu.png")
    return Figure(
        path,
        "d_z against the distance between mean-concentration vectors d_mu over all pairs, "
        + " and ".join(t for t, _ in a.mu_panels)
        + " (the paper's Figure 6): log density, running mean ± std.",
    )


def time_figure(r: EvaluationResult, a: EvaluationArrays, out: Path, cfg: EvaluateConfig):
    """The paper's Figure 7 (time): d_z and d_x against time difference, with their fits."""
    t = r.time
    if t is None:
        return None
    gt = t.ground_truth
    path = plot_time_curve(t.curve, t.fit, out / "dz_vs_time.png", gt.curve, gt.fit)
    ratio = (f"{t.ratio_to_ground_truth:.2f}" if t.ratio_to_ground_truth is not None
             else f"none: {t.ratio_reason}")
    return Figure(
        path,
        f"Distance between two patches of one protein's history against the time "
        f"between them (mean ± std over {len(t.curve.x)} time differences): d_z of the "
        f"metric (left) and d_x, the l2 distance of the standardised patches "
        f"themselves (right, the ground truth), each with the fit "
        f"a + b(1 - exp(-t/tau)). Decorrelation time of d_z: {t.fit.describe()}; of "
        f"d_x: {gt.fit.describe()}; ratio {ratio}. Diffusive estimate "
        f"L^2/(D (2 pi)^2) = {t.diffusive_us:.3g} us (marked only when inside the "
        f"sampled range).",
    )


def space_figure(r: EvaluationResult, a: EvaluationArrays, out: Path, cfg: EvaluateConfig):
    """The paper's Figure 7 (space): d_z against the distance of patch centres in a frame."""
    s, half = r.space, cfg.patch_length_nm / 2
    if s is None or a.space_pairs is None:
        return None
    dist, dz = a.space_pairs
    path = plot_space_curve(s.curve, dist, dz, out / "dz_vs_centre_distance.png", half)
    return Figure(
        path,
        f"d_z against the distance between patch centres for pairs of "
        f"patches of the same frame ({s.n_pairs:,} pairs in "
        f"{s.n_frames} frames); Pearson r = "
        f"{s.pearson_below_half_patch:.2f} below {half:g} nm and "
        f"{s.pearson_above_half_patch:.2f} above.",
    )


#: the report's figures, in their order
FIGURES: tuple[FigureFn, ...] = (
    tsne_figure,
    distance_histograms_figure,
    pair_density_figure,
    pr_curves_figure,
    training_curves_figure,
    mu_densities_figure,
    time_figure,
    space_figure,
)


def draw_figures(
    result: EvaluationResult, arrays: EvaluationArrays, out: Path, cfg: EvaluateConfig
) -> list[Figure]:
    """Draw every figure whose data is present into ``out``, in report order."""
    figures = (draw(result, arrays, out, cfg) for draw in FIGURES)
    return [f for f in figures if f is not None]
