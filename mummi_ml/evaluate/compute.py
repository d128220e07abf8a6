"""The compute stage of ``mummi-ml evaluate``: every number of metrics.json
(:class:`~mummi_ml.evaluate.result.EvaluationResult`) and the arrays the figures draw
(:class:`EvaluationArrays`); nothing is drawn or written here."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from mummi_ml import __version__
from mummi_ml.evaluate.config import EvaluateConfig
from mummi_ml.evaluate.errors import EvaluationError
from mummi_ml.evaluate.evaluation import (
    RepresentationResult,
    embed_all,
    evaluate_representation,
)
from mummi_ml.evaluate.histograms import PairHistogram2D, pair_histogram_2d
from mummi_ml.evaluate.representations import (
    Representation,
    image_representation,
    model_representation,
    mu_representation,
    upsilon_representation,
)
from mummi_ml.evaluate.result import (
    CampaignResult,
    DataInfo,
    EvaluationResult,
    GroundTruthTime,
    ModelInfo,
    PRSummary,
    SpaceResult,
    TimeResult,
)
from mummi_ml.evaluate.spacetime import (
    centre_distance_curve,
    compare_times,
    diffusive_decorrelation_time,
    fit_decorrelation,
    time_difference_curve,
)

if TYPE_CHECKING:  # torch is imported only when a model is evaluated
    from mummi_ml.metric import Metric
from mummi_ml.patch import CLASS_NAMES, PatchBatch, mean_concentrations, open_patches

__all__ = [
    "ours_name",
    "EvaluationArrays",
    "Evaluation",
    "load_eval_set",
    "check_histories",
    "compute_evaluation",
]

#: the table row of the evaluated model
def ours_name(metric: Metric) -> str:
    """The row name of the evaluated model: the losses it was trained with (weight > 0) and,
    for the group model, its exact invariance; e.g. 'L_rad + L_lab, group-invariant (ours)'."""
    terms = " + ".join(t.name for t in metric.loss_cfg.active_terms()) or "no loss"
    group = ", group-invariant" if metric.model_cfg.invariance == "group" else ""
    return f"{terms}{group} (ours)"

Log = Callable[[str], None]


@dataclass(frozen=True)
class EvaluationArrays:
    """What the figures draw beyond the result.

    Attributes:
        classes: class of each evaluation patch [N].
        ours: our model's points, transformation distances and full PR curves.
        pairs_upsilon: all-pairs histogram of (d_Upsilon, d_z) of the evaluation set.
        mu_panels: ``(title, all-pairs histogram of (d_mu, d_z))`` per data set (pre-campaign,
            then campaign when given).
        space_pairs: ``(centre distance [P] nm, d_z [P])`` of the same-frame pairs, or None.
    """

    classes: np.ndarray
    ours: RepresentationResult
    pairs_upsilon: PairHistogram2D
    mu_panels: list[tuple[str, PairHistogram2D]]
    space_pairs: tuple[np.ndarray, np.ndarray] | None


@dataclass(frozen=True)
class Evaluation:
    """The compute stage's output: the result (metrics.json) and the figures' arrays."""

    result: EvaluationResult
    arrays: EvaluationArrays


def load_eval_set(path: str | Path, n_points: int, seed: int) -> PatchBatch:
    """A random subset of ``n_points`` patches (all if fewer) of a patch file, in file order."""
    with open_patches(path) as ds:
        n = len(ds)
        if n < 2:
            raise EvaluationError(f"{path}: expected at least 2 patches, got {n}")
        rng = np.random.default_rng(seed)
        idx = np.sort(rng.choice(n, size=min(n_points, n), replace=False))
        return ds[idx]


def check_histories(histories: str | Path) -> None:
    """EvaluationError unless ``histories`` is a histories file (checked before the work)."""
    with open_patches(histories) as ds:
        kind = ds.attrs.get("kind")
    if kind != "histories":
        raise EvaluationError(
            f"--histories {histories}: not a histories file (kind={kind!r}); write one "
            "with `mummi-ml simulate --histories K`"
        )


def _group(cfg: EvaluateConfig, metric) -> str:
    """Transformations of the overlap criterion: the configured group, or the model's own."""
    if cfg.transform_group == "model":
        return metric.model_cfg.transform_group
    return cfg.transform_group


def _representations(metric, cfg: EvaluateConfig, ablations: dict[str, str | Path]) -> list:
    """Baselines (if configured), then the ablation models, then ours (last)."""
    from mummi_ml.metric import Metric

    reps: list[Representation] = []
    if cfg.baselines:
        reps += [
            image_representation(metric.stats),
            mu_representation(),
            upsilon_representation(metric.stats, metric.profile_channels),
        ]
    for name, path in ablations.items():
        reps.append(model_representation(Metric.load(path, device=cfg.device), name, "ablation"))
    return reps + [model_representation(metric, ours_name(metric))]


def _evaluate_set(
    reps: list[Representation], batch: PatchBatch, metric, cfg: EvaluateConfig, group: str,
    log: Log,
) -> tuple[list[RepresentationResult], np.ndarray]:
    """Every representation's criteria on ``batch`` (the image baseline on at most
    ``cfg.images_max_points`` points) and the batch's radial profiles Upsilon [N, p]."""
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


def _notes(cfg: EvaluateConfig, group: str, n_points: int) -> list[str]:
    """The notes under the table: how lambda and the overlap were computed."""
    notes = [
        "MARE uses the model's own lambda_rad; for baselines and models trained without L_rad, "
        "lambda is the least-squares slope of d on d_Upsilon through the origin over all pairs "
        "(column 'lambda', marked 'fit').",
        f"Overlap uses the '{group}' transformations; for a baseline the transformed point is "
        "the feature of the transformed patch.",
    ]
    if cfg.baselines and n_points > cfg.images_max_points:
        notes.append(
            f"The image baseline is evaluated on the first {cfg.images_max_points:,} "
            f"of the {n_points:,} points (evaluate.images_max_points)."
        )
    return notes


def _decimate_pr(pr, n: int = 200) -> PRSummary:
    """The mean curves at ~n log-spaced neighbourhood sizes (for metrics.json)."""
    idx = np.unique(np.geomspace(1, len(pr.k), n).astype(int) - 1)
    return PRSummary(
        pr.k[idx].tolist(), pr.precision[idx].tolist(), pr.recall[idx].tolist(),
        pr.accuracy[idx].tolist(),
    )


def _mu_histogram(x: np.ndarray, z: np.ndarray, cfg: EvaluateConfig) -> PairHistogram2D:
    """All-pairs histogram of (d_mu, d_z): mean-concentration distance against the metric's."""
    return pair_histogram_2d(mean_concentrations(x), z, (cfg.histogram_bins,) * 2, cfg.device)


def _campaign(
    path: str | Path, main: Representation, metric, cfg: EvaluateConfig, group: str, log: Log
) -> tuple[CampaignResult, PairHistogram2D]:
    """The model (and the mu and Upsilon baselines) on campaign data; its (d_mu, d_z) panel."""
    cbatch = load_eval_set(path, cfg.n_points, cfg.seed)
    log(f"campaign: {len(cbatch):,} patches of {path}")
    creps = (
        [mu_representation(), upsilon_representation(metric.stats, metric.profile_channels)]
        if cfg.baselines
        else []
    ) + [main]
    cres, _ = _evaluate_set(creps, cbatch, metric, cfg, group, log)
    result = CampaignResult(str(path), len(cbatch), [r.row for r in cres])
    return result, _mu_histogram(cbatch.x, cres[-1].z, cfg)


def _time(histories: str | Path, main: Representation, metric, cfg: EvaluateConfig,
          log: Log) -> TimeResult:
    """Decorrelation of d_z and of the patches' own distance d_x within the histories."""
    diffusive = diffusive_decorrelation_time(cfg.patch_length_nm, cfg.diffusion_nm2_per_us)
    log(f"time: histories {histories}")
    with open_patches(histories) as ds:
        hb = ds.read()
    hb = hb.subset(np.flatnonzero(hb.protein_id >= 0))
    curve = time_difference_curve(embed_all(main, hb.x), hb.protein_id, hb.time_us)
    fit = fit_decorrelation(curve, diffusive)
    # ground truth: the same curve and fit for the patches themselves (standardised images)
    gt_curve = time_difference_curve(
        image_representation(metric.stats).embed(hb.x), hb.protein_id, hb.time_us
    )
    gt_fit = fit_decorrelation(gt_curve, diffusive)
    cmp = compare_times(fit, gt_fit)
    log(f"time: d_z {fit.describe()}, d_x {gt_fit.describe()}, diffusive {diffusive:.3g} us")
    return TimeResult(
        path=str(histories),
        n_patches=len(hb),
        n_histories=int(len(np.unique(hb.protein_id))),
        diffusive_us=diffusive,
        fit=fit,
        curve=curve,
        ground_truth=GroundTruthTime("l2 of the standardised patches (d_x)", gt_fit, gt_curve),
        ratio_to_ground_truth=cmp.ratio,
        ratio_reason=cmp.reason,
    )


def _same_frame_patches(data: str | Path, cfg: EvaluateConfig):
    """Up to ``cfg.space_frames`` frames (same replica and time) of ``data`` holding two or
    more patches: ``(patches, frame id per patch, domain_nm or None, frames)``, or None."""
    with open_patches(data) as ds:
        replica, t = ds.field("replica"), ds.field("time_us")
        domain = ds.attrs.get("domain_nm")
        frame_key = np.unique(
            np.stack([replica.astype(np.float64), t], 1), axis=0, return_inverse=True
        )[1].reshape(-1)
        good = np.flatnonzero(np.bincount(frame_key) >= 2)
        if len(good) == 0:
            return None
        rng = np.random.default_rng(cfg.seed)
        chosen = rng.choice(good, size=min(cfg.space_frames, len(good)), replace=False)
        idx = np.flatnonzero(np.isin(frame_key, chosen))
        return ds[idx], frame_key[idx], float(domain) if domain else None, len(chosen)


def _space(data: str | Path, rep: Representation, cfg: EvaluateConfig, log: Log):
    """Same-frame pairs of the data file: ``(SpaceResult, centre distances [P] nm, d_z [P])``
    (None if no frame has two patches)."""
    frames = _same_frame_patches(data, cfg)
    if frames is None:
        return None
    b, frame, domain, n_frames = frames
    log(f"space: {n_frames} frames, {len(b):,} patches")
    z = embed_all(rep, b.x)
    curve, dist, dz = centre_distance_curve(z, b.centre_nm, frame, domain, cfg.space_bin_nm)
    half = cfg.patch_length_nm / 2

    def pearson(m):
        return float(np.corrcoef(dist[m], dz[m])[0, 1]) if m.sum() > 2 else math.nan

    result = SpaceResult(
        n_frames=int(n_frames),
        n_pairs=int(len(dist)),
        domain_nm=domain,
        pearson_below_half_patch=pearson(dist < half),
        pearson_above_half_patch=pearson(dist >= half),
        curve=curve,
    )
    return result, dist, dz


def compute_evaluation(
    model_dir: str | Path,
    data: str | Path,
    cfg: EvaluateConfig,
    campaign: str | Path | None = None,
    histories: str | Path | None = None,
    ablations: dict[str, str | Path] | None = None,
    log: Log = lambda _msg: None,
) -> Evaluation:
    """Every criterion and analysis of ``run_evaluation`` (arguments as there); ``seconds`` of
    the result is left NaN for the caller to fill in."""
    from mummi_ml.metric import Metric

    metric = Metric.load(model_dir, device=cfg.device)
    group = _group(cfg, metric)
    batch = load_eval_set(data, cfg.n_points, cfg.seed)
    log(f"model {model_dir} (d = {metric.latent_dim}), {len(batch):,} patches of {data}")
    reps = _representations(metric, cfg, ablations or {})
    main = reps[-1]
    results, upsilon = _evaluate_set(reps, batch, metric, cfg, group, log)
    ours = results[-1]
    mu_panels = [("pre-campaign", _mu_histogram(batch.x, ours.z, cfg))]
    camp = None
    if campaign is not None:
        camp, panel = _campaign(campaign, main, metric, cfg, group, log)
        mu_panels.append(("campaign", panel))
    time_result = _time(histories, main, metric, cfg, log) if histories is not None else None
    space = _space(data, main, cfg, log)
    result = EvaluationResult(
        created_by=f"mummi-ml {__version__} evaluate",
        model=ModelInfo(str(model_dir), metric.version, metric.latent_dim, metric.lambda_rad),
        data=DataInfo(
            str(data), len(batch), cfg.seed,
            np.bincount(batch.classes, minlength=len(CLASS_NAMES)).tolist(),
        ),
        transform_group=group,
        table=[r.row for r in results],
        pr_curve_ours=_decimate_pr(ours.pr),
        notes=_notes(cfg, group, len(batch)),
        campaign=camp,
        time=time_result,
        space=space[0] if space is not None else None,
    )
    h_zu = pair_histogram_2d(upsilon, ours.z, (cfg.histogram_bins,) * 2, cfg.device)
    arrays = EvaluationArrays(
        batch.classes, ours, h_zu, mu_panels, space[1:] if space is not None else None
    )
    return Evaluation(result, arrays)
