"""The metric against time and space (the paper's Figure 7).

* Time: within one protein's dense history, d_z between two patches against the time between
  them; mean and std per time difference; a saturating fit d(t) = a + b (1 - exp(-t / tau))
  whose tau is compared with the diffusive decorrelation time L^2 / (D (2 pi)^2) (about 0.53 us
  for L = 30 nm, D = 43.36 nm^2/us).
* Space: patches saved at the same time of the same simulation, d_z against the distance between
  their centres (minimum image on the periodic domain when its size is known); expected:
  correlated below half a patch (15 nm), flat beyond.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from mummi_ml.evaluate.errors import EvaluationError

__all__ = [
    "diffusive_decorrelation_time",
    "BinnedCurve",
    "DecorrelationFit",
    "time_difference_curve",
    "fit_decorrelation",
    "centre_distance_curve",
]


def diffusive_decorrelation_time(length_nm: float, diffusion_nm2_per_us: float) -> float:
    """L^2 / (D (2 pi)^2) in microseconds: the decay time of the slowest Fourier mode of an L x L
    patch under diffusion (paper appendix A.6)."""
    return length_nm**2 / (diffusion_nm2_per_us * (2 * math.pi) ** 2)


@dataclass(frozen=True)
class BinnedCurve:
    """Mean and std of d_z per bin of a pair property. x: bin centres (or exact values) [B];
    mean, std [B]; count [B] pairs per bin."""

    x: np.ndarray
    mean: np.ndarray
    std: np.ndarray
    count: np.ndarray

    def to_dict(self) -> dict:
        return {k: np.asarray(v).tolist() for k, v in asdict(self).items()}


@dataclass(frozen=True)
class DecorrelationFit:
    """d(t) = a + b (1 - exp(-t / tau_us)); diffusive_us = L^2 / (D (2 pi)^2); ratio =
    tau_us / diffusive_us; ok: the fit converged."""

    a: float
    b: float
    tau_us: float
    diffusive_us: float
    ratio: float
    ok: bool

    def to_dict(self) -> dict:
        return asdict(self)


def _group_pairs(groups: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """All index pairs (i < j) of points with the same group value (one loop over groups)."""
    order = np.argsort(groups, kind="stable")
    starts = np.flatnonzero(np.r_[True, groups[order][1:] != groups[order][:-1]])
    ends = np.r_[starts[1:], len(order)]
    ii, jj = [], []
    for s, e in zip(starts, ends, strict=True):
        if e - s < 2:
            continue
        a, b = np.triu_indices(e - s, k=1)
        ii.append(order[s + a])
        jj.append(order[s + b])
    if not ii:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    return np.concatenate(ii), np.concatenate(jj)


def _bin_stats(key: np.ndarray, value: np.ndarray, edges: np.ndarray | None) -> BinnedCurve:
    if edges is None:  # exact values (e.g. multiples of a sampling interval)
        xs, inv = np.unique(key, return_inverse=True)
    else:
        inv = np.clip(np.digitize(key, edges) - 1, 0, len(edges) - 2)
        xs = 0.5 * (edges[1:] + edges[:-1])
    nb = len(xs)
    cnt = np.bincount(inv, minlength=nb).astype(float)
    s1 = np.bincount(inv, weights=value, minlength=nb)
    s2 = np.bincount(inv, weights=value * value, minlength=nb)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = s1 / cnt
        std = np.sqrt(np.maximum(s2 / cnt - mean**2, 0.0))
    keep = cnt > 0
    return BinnedCurve(xs[keep], mean[keep], std[keep], cnt[keep])


def time_difference_curve(
    z: np.ndarray, protein_id: np.ndarray, time_us: np.ndarray, decimals: int = 6
) -> BinnedCurve:
    """Mean/std of d_z over pairs of one history against their time difference (us).

    Args:
        z: embeddings [N, d] of history patches.
        protein_id: history id per patch [N] (>= 0).
        time_us: time of each patch [N] (us); differences rounded to ``decimals``.
    """
    if len(z) != len(protein_id) or len(z) != len(time_us):
        raise EvaluationError(
            f"histories: z, protein_id and time_us must have one row per patch, "
            f"got {len(z)}, {len(protein_id)}, {len(time_us)}"
        )
    i, j = _group_pairs(np.asarray(protein_id))
    if len(i) == 0:
        raise EvaluationError("histories: no protein has two or more patches")
    dt = np.round(np.abs(time_us[i] - time_us[j]), decimals)
    dz = np.linalg.norm(z[i].astype(np.float64) - z[j], axis=1)
    return _bin_stats(dt, dz, None)


def fit_decorrelation(curve: BinnedCurve, diffusive_us: float) -> DecorrelationFit:
    """Least-squares fit of a + b (1 - exp(-t / tau)) to the mean curve (weights: pair counts)."""
    from scipy.optimize import curve_fit

    t, y = curve.x, curve.mean
    if len(t) < 3:
        return DecorrelationFit(math.nan, math.nan, math.nan, diffusive_us, math.nan, False)

    def f(tt, a, b, tau):
        return a + b * (1.0 - np.exp(-tt / tau))

    p0 = (float(y[0]), float(max(y.max() - y[0], 1e-6)), float(max(np.median(t), 1e-6)))
    try:
        (a, b, tau), _ = curve_fit(
            f,
            t,
            y,
            p0=p0,
            sigma=1.0 / np.sqrt(curve.count),
            maxfev=20000,
            bounds=([-np.inf, 0.0, 1e-9], [np.inf, np.inf, 1e3 * float(t.max())]),
        )
        ok = True
    except (RuntimeError, ValueError):
        a, b, tau, ok = math.nan, math.nan, math.nan, False
    return DecorrelationFit(
        float(a), float(b), float(tau), diffusive_us, float(tau) / diffusive_us, ok
    )


def centre_distance_curve(
    z: np.ndarray,
    centre_nm: np.ndarray,
    frame: np.ndarray,
    domain_nm: float | None = None,
    bin_nm: float = 2.0,
) -> tuple[BinnedCurve, np.ndarray, np.ndarray]:
    """Mean/std of d_z over pairs of patches of one frame against the distance of their centres.

    Args:
        z: embeddings [N, d]; centre_nm: patch centres [N, 2] (nm); frame: frame id per patch
            [N] (pairs are only formed within a frame); domain_nm: periodic domain length (nm)
            for minimum-image distances, or None.

    Returns:
        (curve, distances [P] nm, d_z [P]) over all P pairs.
    """
    i, j = _group_pairs(np.asarray(frame))
    if len(i) == 0:
        raise EvaluationError("space: no frame holds two or more patches")
    delta = centre_nm[i].astype(np.float64) - centre_nm[j]
    if domain_nm:
        delta -= domain_nm * np.round(delta / domain_nm)
    dist = np.linalg.norm(delta, axis=1)
    dz = np.linalg.norm(z[i].astype(np.float64) - z[j], axis=1)
    edges = np.arange(0.0, dist.max() + bin_nm, bin_nm)
    if len(edges) < 2:
        edges = np.array([0.0, bin_nm])
    return _bin_stats(dist, dz, edges), dist, dz
