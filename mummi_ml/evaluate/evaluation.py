"""Evaluate representations (learned metrics, baselines) on a set of patches: the three criteria
and what the figures need."""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from mummi_ml.evaluate.mare import mare
from mummi_ml.evaluate.overlap import invariance_distances, overlap_from_tau
from mummi_ml.evaluate.pr_curve import PRCurve, pr_curve
from mummi_ml.evaluate.representations import Representation
from mummi_ml.evaluate.table import TableRow
from mummi_ml.patch import TRANSFORM_GROUPS, apply_transforms

__all__ = [
    "RepresentationResult",
    "embed_all",
    "transformation_distances",
    "evaluate_representation",
]


@dataclass
class RepresentationResult:
    """Criteria of one representation and the arrays behind them.

    Attributes:
        row: the table row.
        z: points [N, dim] float32.
        inv_dist: distance of each point to each of its transformations [N, T].
        transforms: names of the T transformations.
        pr: the precision/recall/accuracy curves.
    """

    row: TableRow
    z: np.ndarray
    inv_dist: np.ndarray
    transforms: tuple[str, ...]
    pr: PRCurve


def embed_all(rep: Representation, x: np.ndarray, batch_size: int = 512) -> np.ndarray:
    """``rep.embed`` over ``x`` [N, 37, 37, 14] in batches -> [N, dim] float32."""
    out = [
        np.asarray(rep.embed(x[i : i + batch_size]), dtype=np.float32)
        for i in range(0, len(x), batch_size)
    ]
    return np.concatenate(out) if out else np.zeros((0, rep.dim), np.float32)


def transformation_distances(
    rep: Representation,
    x: np.ndarray,
    z: np.ndarray,
    group: str = "paper",
    batch_size: int = 128,
    device=None,
) -> np.ndarray:
    """d(z_i, f(rho_t(x_i))) for every patch and transformation -> [N, T] float64 (streamed:
    the transformed patches of one batch at a time)."""
    t = len(TRANSFORM_GROUPS[group])
    out = np.empty((len(x), t))
    for i in range(0, len(x), batch_size):
        xt = apply_transforms(x[i : i + batch_size], group)  # [b, T, 37, 37, 14]
        b = len(xt)
        zt = np.asarray(rep.embed(xt.reshape(b * t, *xt.shape[2:])), np.float32).reshape(b, t, -1)
        out[i : i + b] = invariance_distances(z[i : i + b], zt, device).numpy()
    return out


def evaluate_representation(
    rep: Representation,
    x: np.ndarray,
    classes: np.ndarray,
    upsilon: np.ndarray,
    group: str = "paper",
    device=None,
) -> RepresentationResult:
    """All three criteria of ``rep`` on raw patches ``x`` [N, 37, 37, 14] with class labels
    [N] and radial profiles ``upsilon`` [N, p] (of the same patches)."""
    t0 = time.perf_counter()
    z = embed_all(rep, x)
    inv = transformation_distances(rep, x, z, group, device=device)
    ov = overlap_from_tau(z, float(inv.max()), device)
    m = mare(z, upsilon, lam=rep.lam, device=device)
    pr = pr_curve(z, classes, device)
    row = TableRow(
        name=rep.name,
        kind=rep.kind,
        dim=rep.dim,
        overlap_percent=ov.percent,
        tau=ov.tau,
        mare=m.mare,
        mare_star=m.mare_star,
        lam=m.lam,
        lam_fitted=m.lam_fitted,
        auc=pr.auc,
        n_points=len(x),
        seconds=time.perf_counter() - t0,
    )
    return RepresentationResult(row, z, inv, TRANSFORM_GROUPS[group], pr)
