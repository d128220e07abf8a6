"""Blocked, exact pairwise Euclidean distances in torch (bounded memory, CPU threads or GPU).

Every criterion walks the N(N-1)/2 pairs (or the N x (N-1) neighbour lists) in row blocks; this
module owns how a block of distances is computed so that all criteria (and the brute-force tests)
agree on the arithmetic:

* dimension <= ``DIRECT_MAX_DIM``: sqrt(sum_k (a_k - b_k)^2) (``torch.cdist`` without the matrix
  product expansion), so identical points are at distance exactly 0;
* larger dimensions (baselines: 304-D Upsilon, 19,166-D images): the matrix-product expansion
  ||a||^2 + ||b||^2 - 2 a.b, clamped at 0 (rounding ~1e-16 ||a||^2 in float64).
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch

from mummi_ml.evaluate.errors import EvaluationError

__all__ = [
    "DIRECT_MAX_DIM",
    "pick_device",
    "as_points",
    "block_distances",
    "iter_upper_pair_blocks",
    "default_block_rows",
    "n_pairs",
    "upper_pair_pieces",
    "upper_pair_values",
]

#: largest dimension for which distances are computed by direct differences
DIRECT_MAX_DIM = 64


def pick_device(device: str | torch.device | None = None) -> torch.device:
    """``device`` if given, else CUDA when available, else CPU."""
    if device is not None:
        return torch.device(device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def as_points(
    a, name: str, device: torch.device, dtype: torch.dtype = torch.float64, ndim: int = 2
) -> torch.Tensor:
    """Validate an array of points and return it as a contiguous tensor on ``device``.

    Raises:
        EvaluationError: wrong number of dimensions, no points, or non-finite values.
    """
    t = a if isinstance(a, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(a))
    if t.ndim != ndim:
        want = "[N, d]" if ndim == 2 else "[N, T, d]"
        raise EvaluationError(
            f"{name}: expected an array of shape {want}, got shape {tuple(t.shape)}"
        )
    if t.shape[0] == 0 or t.shape[-1] == 0:
        raise EvaluationError(
            f"{name}: expected at least one point of dimension >= 1, got shape {tuple(t.shape)}"
        )
    t = t.to(device=device, dtype=dtype).contiguous()
    if not bool(torch.isfinite(t).all()):
        raise EvaluationError(f"{name}: expected finite values, got NaN or inf")
    return t


def n_pairs(n: int) -> int:
    """Number of unordered pairs of distinct points, N(N-1)/2."""
    return n * (n - 1) // 2


def default_block_rows(n: int, bytes_per_row_entry: int = 64, budget_bytes: int = 768 << 20) -> int:
    """Rows per block so that a few [rows, N] float64 work arrays fit in ``budget_bytes``."""
    return int(max(1, min(n, budget_bytes // max(1, n * bytes_per_row_entry))))


def block_distances(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Euclidean distances between rows of ``a`` [B, d] and rows of ``b`` [M, d] -> [B, M].

    Direct differences for d <= DIRECT_MAX_DIM, the matrix-product expansion above.
    """
    if a.shape[1] <= DIRECT_MAX_DIM:
        return torch.cdist(a, b, compute_mode="donot_use_mm_for_euclid_dist")
    return torch.cdist(a, b, compute_mode="use_mm_for_euclid_dist")


def iter_upper_pair_blocks(n: int, block_rows: int) -> Iterator[tuple[int, int]]:
    """Row blocks ``(i0, i1)`` covering the upper triangle: block rows i0..i1-1 pair with
    columns j > i (the caller takes the strict upper triangle of the diagonal square)."""
    for i0 in range(0, max(n - 1, 0), block_rows):
        yield i0, min(i0 + block_rows, n - 1)


def upper_pair_pieces(x: torch.Tensor, i0: int, i1: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Distances of every pair (i, j), i0 <= i < i1, j > i, as two flat pieces: the strict upper
    triangle of the diagonal square (j < i1) and the rectangle j >= i1."""
    b = i1 - i0
    square = block_distances(x[i0:i1], x[i0:i1])  # [B, B]
    rows, cols = torch.triu_indices(b, b, offset=1, device=x.device)
    rect = block_distances(x[i0:i1], x[i1:])  # [B, N - i1]
    return square[rows, cols], rect.reshape(-1)


def upper_pair_values(x: torch.Tensor, i0: int, i1: int) -> torch.Tensor:
    """Distances of every pair (i, j), i0 <= i < i1, j > i, flattened (length sum of N-1-i)."""
    return torch.cat(upper_pair_pieces(x, i0, i1))
