"""Euclidean distances with finite gradients, also between identical points."""

from __future__ import annotations

import torch

__all__ = ["pairwise_distances", "EPS"]

EPS = 1e-12
"""Floor of squared distances: sqrt stays differentiable at 0 (distance 1e-6 instead of 0)."""


def pairwise_distances(a: torch.Tensor, b: torch.Tensor | None = None) -> torch.Tensor:
    """Euclidean distances between the rows of ``a`` ``[N, d]`` and ``b`` ``[M, d]`` -> ``[N, M]``.

    Computed from explicit differences (exact, no cancellation), with squared distances floored at
    :data:`EPS` so that the gradient is finite (zero) where two points coincide.
    """
    b = a if b is None else b
    if a.dim() != 2 or b.dim() != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(f"pairwise_distances: expected [N, d] and [M, d], got {list(a.shape)} "
                         f"and {list(b.shape)}")
    d2 = ((a[:, None, :] - b[None, :, :]) ** 2).sum(-1)  # [N, M]
    return torch.sqrt(d2.clamp_min(EPS))
