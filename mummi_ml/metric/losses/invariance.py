"""Invariance loss L_inv: every patch closer to its own transformations than to any other patch."""

from __future__ import annotations

import torch

from mummi_ml.metric.losses.distances import pairwise_distances

__all__ = ["invariance_loss", "view_distances", "invariance_from_distances"]


def invariance_loss(z: torch.Tensor, alpha: float = 1.0) -> torch.Tensor:
    """Batch-hard triplet loss over patches and their transformations.

    For each patch i (the anchor, its view 0): the hardest positive is its farthest
    transformation, ``d_pos(i) = max_t d(z[i, 0], z[i, t])``; the hardest negative the nearest view
    of any other patch, ``d_neg(i) = min_{j != i, v} d(z[i, 0], z[j, v])``.
    ``L = mean_i max(0, alpha + d_pos(i) - d_neg(i))``.

    Args:
        z: ``[B, 1 + T, d]`` embeddings; view 0 is the untransformed patch.
        alpha: margin alpha_inv (units of d_z).

    Returns:
        Scalar tensor; 0 (with zero gradient) when the batch has a single patch or no
        transformations (no valid triplet).
    """
    if z.dim() != 3:
        raise ValueError(f"invariance_loss: z expected [B, 1+T, d], got {list(z.shape)}")
    b, k, d = z.shape
    if b < 2 or k < 2:
        return z.sum() * 0.0
    return invariance_from_distances(view_distances(z), alpha)


def view_distances(z: torch.Tensor) -> torch.Tensor:
    """``z [B, 1 + T, d]`` -> ``[B, B, 1 + T]``: distance of anchor i (view 0 of patch i) to
    view v of patch j. ``[:, :, 0]`` is the anchors' own distance matrix (the label and radial
    losses reuse it)."""
    b, k, d = z.shape
    return pairwise_distances(z[:, 0], z.reshape(b * k, d)).reshape(b, b, k)


def invariance_from_distances(d_all: torch.Tensor, alpha: float = 1.0) -> torch.Tensor:
    """:func:`invariance_loss` from :func:`view_distances` ``[B, B, 1 + T]`` (B >= 2, T >= 1)."""
    b = d_all.shape[0]
    d_pos = d_all.diagonal(dim1=0, dim2=1)[1:].amax(dim=0)  # [B]: own views, no index_put
    own = torch.eye(b, dtype=torch.bool, device=d_all.device)  # [B, B]
    d_neg = d_all.masked_fill(own[:, :, None], float("inf")).amin(dim=(1, 2))  # [B]
    return torch.relu(alpha + d_pos - d_neg).mean()
