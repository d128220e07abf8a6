"""MARE: median absolute residual error of d_z against lambda * d_Upsilon over all pairs.

MARE = median over pairs j < k of |d_z(j, k) - lambda d_Upsilon(j, k)| (units of d_z);
MARE* = MARE / lambda (units of d_Upsilon). For a metric trained with a proportionality factor
lambda_rad, pass ``lam=lambda_rad``; otherwise (baselines) lambda is fitted: the least-squares
slope of d_z on d_Upsilon through the origin, sum(d_z d_Upsilon) / sum(d_Upsilon^2), over all
pairs. The median is exact (see :mod:`mummi_ml.evaluate.selection`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import NamedTuple

import torch

from mummi_ml.evaluate.errors import EvaluationError
from mummi_ml.evaluate.pairs import (
    as_points,
    default_block_rows,
    iter_upper_pair_blocks,
    n_pairs,
    pick_device,
    upper_pair_pieces,
)
from mummi_ml.evaluate.selection import exact_median

__all__ = ["MAREResult", "mare", "fit_lambda", "pair_distance_moments"]


class MAREResult(NamedTuple):
    """``mare`` (units of d_z), ``mare_star`` = mare / lam (units of d_Upsilon) and the ``lam``
    used; ``lam_fitted`` tells whether lam was fitted (least squares through the origin)."""

    mare: float
    mare_star: float
    lam: float
    lam_fitted: bool = False

    def to_dict(self) -> dict:
        return dict(self._asdict())


@dataclass(frozen=True)
class PairMoments:
    """Sums over all pairs used by the lambda fit and the histogram range."""

    sum_zu: float
    sum_uu: float
    max_z: float
    max_u: float

    def to_dict(self) -> dict:
        return asdict(self)


def _check(z, upsilon, device):
    dev = pick_device(device)
    zt = as_points(z, "z", dev)
    ut = as_points(upsilon, "upsilon", dev)
    if ut.shape[0] != zt.shape[0]:
        raise EvaluationError(f"upsilon: expected {zt.shape[0]} rows to match z, got {ut.shape[0]}")
    if zt.shape[0] < 2:
        raise EvaluationError(f"z: expected at least 2 points, got {zt.shape[0]}")
    return zt, ut


def _radius(x: torch.Tensor) -> float:
    """Upper bound / 2 of any pairwise distance: the largest distance to the centroid."""
    return float(torch.linalg.vector_norm(x - x.mean(0), dim=1).max())


def _pieces(zt: torch.Tensor, ut: torch.Tensor, rows: int):
    """(d_z pieces, d_U pieces) of every row block of pairs, in a fixed order."""
    for i0, i1 in iter_upper_pair_blocks(zt.shape[0], rows):
        yield upper_pair_pieces(zt, i0, i1), upper_pair_pieces(ut, i0, i1)


def pair_distance_moments(z, upsilon, device=None, block_rows: int | None = None) -> PairMoments:
    """sum(d_z d_U), sum(d_U^2) and the largest d_z and d_U over all pairs (one blocked pass)."""
    zt, ut = _check(z, upsilon, device)
    rows = block_rows or default_block_rows(zt.shape[0], bytes_per_row_entry=48)
    szu = suu = mz = mu = 0.0
    for dzs, dus in _pieces(zt, ut, rows):
        for dz, du in zip(dzs, dus, strict=True):
            if dz.numel():
                szu += float(torch.dot(dz, du))
                suu += float(torch.dot(du, du))
                mz, mu = max(mz, float(dz.max())), max(mu, float(du.max()))
    return PairMoments(szu, suu, mz, mu)


def _slope(szu: float, suu: float) -> float:
    if suu == 0:
        raise EvaluationError(
            "upsilon: all points are identical, so the slope lambda of d_z on "
            "d_Upsilon is undefined; pass lam explicitly"
        )
    return szu / suu


def fit_lambda(z, upsilon, device=None, block_rows: int | None = None) -> float:
    """Least-squares slope through the origin of d_z on d_Upsilon over all pairs."""
    m = pair_distance_moments(z, upsilon, device, block_rows)
    return _slope(m.sum_zu, m.sum_uu)


def _residual_(du: torch.Tensor, dz: torch.Tensor, lam: float) -> torch.Tensor:
    """|dz - lam du|, written into ``du`` (multiply, then add: no fused multiply-add)."""
    return du.mul_(-lam).add_(dz).abs_()


def _check_lam(lam: float) -> None:
    if not (lam > 0 and lam < float("inf")):
        raise EvaluationError(f"lam: expected a finite value > 0, got {lam}")


def _cached_residuals(zt, ut, rows: int, lam: float | None):
    """All pair residuals |d_z - lam d_U| kept in memory: pass 1 keeps d_U (or the residuals
    directly when ``lam`` is known); pass 2 (``lam`` None: fitted) turns d_U into residuals.
    Returns (residual pieces, lam, largest residual)."""
    fitted = lam is None
    cache: list[torch.Tensor] = []
    szu = suu = 0.0
    for dzs, dus in _pieces(zt, ut, rows):
        for dz, du in zip(dzs, dus, strict=True):
            if fitted:
                szu += float(torch.dot(dz, du))
                suu += float(torch.dot(du, du))
            else:
                du = _residual_(du, dz, lam)
            cache.append(du)
    if fitted:
        lam = _slope(szu, suu)
        _check_lam(lam)
        it = iter(cache)
        for i0, i1 in iter_upper_pair_blocks(zt.shape[0], rows):
            for dz in upper_pair_pieces(zt, i0, i1):
                _residual_(next(it), dz, lam)
    hi = max((float(c.max()) for c in cache if c.numel()), default=0.0)
    return cache, lam, hi


def mare(
    z,
    upsilon,
    lam: float | None = None,
    device=None,
    block_rows: int | None = None,
    cache_bytes: int = 4 << 30,
) -> MAREResult:
    """MARE, MARE* and lambda of points ``z`` [N, d] against radial profiles ``upsilon`` [N, p].

    Args:
        z: embeddings (or any representation), array [N, d].
        upsilon: radial profile features of the same points, array [N, p].
        lam: the proportionality factor (a trained model's lambda_rad); None fits it by least
            squares through the origin over all pairs (for baselines).
        device: torch device (default: CUDA if available, else CPU).
        block_rows: rows per block (default: from a ~0.75 GB working-memory budget).
        cache_bytes: if the N(N-1)/2 float64 pair values fit in this many bytes, they are kept
            between passes (N = 30,000: 3.6 GB) instead of recomputing the distances.
    """
    zt, ut = _check(z, upsilon, device)
    n = zt.shape[0]
    rows = block_rows or default_block_rows(n, bytes_per_row_entry=48)
    fitted = lam is None
    if not fitted:
        _check_lam(lam)
    count = n_pairs(n)
    if count * 8 <= cache_bytes:
        cache, lam, hi = _cached_residuals(zt, ut, rows, lam)

        def residuals():
            return iter(cache)

    else:
        if fitted:
            lam = fit_lambda(zt, ut, device=zt.device, block_rows=rows)
            _check_lam(lam)

        def residuals():
            for dzs, dus in _pieces(zt, ut, rows):
                for dz, du in zip(dzs, dus, strict=True):
                    yield _residual_(du, dz, lam)

        hi = 2.0 * (_radius(zt) + lam * _radius(ut))
    med = exact_median(residuals, count, 0.0, max(hi, 1e-300))
    return MAREResult(mare=med, mare_star=med / lam, lam=float(lam), lam_fitted=fitted)
