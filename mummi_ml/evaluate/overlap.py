"""Overlap %: how many pairs of distinct points are no farther apart than some point is from
one of its own transformations (DESIGN.md, "Evaluation criteria").

tau = max over points i and transformations t of d(z_i, z_i^t); overlap = 100 * #{j < k :
d(z_j, z_k) <= tau} / (N (N - 1) / 2). Lower is better; 0 for an exactly invariant feature
(tau = 0) unless some points coincide.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch

from mummi_ml.evaluate.errors import EvaluationError
from mummi_ml.evaluate.pairs import (
    DIRECT_MAX_DIM,
    as_points,
    default_block_rows,
    iter_upper_pair_blocks,
    n_pairs,
    pick_device,
    upper_pair_pieces,
)

__all__ = [
    "OverlapResult",
    "invariance_distances",
    "count_pairs_within",
    "overlap",
    "overlap_from_tau",
    "overlap_percent",
]


@dataclass(frozen=True)
class OverlapResult:
    """Overlap criterion. ``percent`` = 100 * ``n_within`` / ``n_pairs``; ``tau`` in units of
    the metric."""

    percent: float
    tau: float
    n_within: int
    n_pairs: int

    def to_dict(self) -> dict:
        return asdict(self)


def invariance_distances(z, z_transformed, device=None) -> torch.Tensor:
    """d(z_i, z_i^t) for every point and transformation.

    Args:
        z: array [N, d] of points.
        z_transformed: array [N, T, d]; row i holds the T transformations of point i.

    Returns:
        Tensor [N, T] float64 (on CPU).
    """
    dev = pick_device(device)
    zt = as_points(z, "z", dev)
    tt = as_points(z_transformed, "z_transformed", dev, ndim=3)
    if tt.shape[0] != zt.shape[0] or tt.shape[2] != zt.shape[1]:
        raise EvaluationError(
            f"z_transformed: expected shape [{zt.shape[0]}, T, {zt.shape[1]}] to match z, "
            f"got {tuple(tt.shape)}"
        )
    mode = (
        "donot_use_mm_for_euclid_dist"
        if zt.shape[1] <= DIRECT_MAX_DIM
        else "use_mm_for_euclid_dist"
    )
    return torch.cdist(zt.unsqueeze(1), tt, compute_mode=mode)[:, 0, :].cpu()  # [N, T]


def count_pairs_within(z, tau: float, device=None, block_rows: int | None = None) -> int:
    """Number of pairs j < k of rows of ``z`` [N, d] with d(z_j, z_k) <= ``tau`` (exact, in
    row blocks)."""
    dev = pick_device(device)
    zt = as_points(z, "z", dev)
    n = zt.shape[0]
    rows = block_rows or default_block_rows(n, bytes_per_row_entry=24)
    total = 0
    for i0, i1 in iter_upper_pair_blocks(n, rows):
        total += sum(int((piece <= tau).sum()) for piece in upper_pair_pieces(zt, i0, i1))
    return total


def overlap(z, z_transformed, device=None, block_rows: int | None = None) -> OverlapResult:
    """Overlap criterion of points ``z`` [N, d] and their transformations [N, T, d]."""
    tau = float(invariance_distances(z, z_transformed, device).max())
    return overlap_from_tau(z, tau, device, block_rows)


def overlap_from_tau(z, tau: float, device=None, block_rows: int | None = None) -> OverlapResult:
    """Overlap criterion for a known tau (e.g. accumulated over streamed transformations)."""
    if not tau >= 0:
        raise EvaluationError(f"tau: expected a finite value >= 0, got {tau}")
    n = len(z)
    if n < 2:
        raise EvaluationError(f"z: expected at least 2 points, got {n}")
    within = count_pairs_within(z, tau, device, block_rows)
    total = n_pairs(n)
    return OverlapResult(percent=100.0 * within / total, tau=tau, n_within=within, n_pairs=total)


def overlap_percent(z, z_transformed, device=None, block_rows: int | None = None) -> float:
    """Overlap % (lower is better) of points ``z`` [N, d] given their transformations
    ``z_transformed`` [N, T, d]: the percentage of the N(N-1)/2 pairs of distinct points whose
    distance is <= tau, the largest distance of any point to any of its transformations."""
    return overlap(z, z_transformed, device, block_rows).percent
