"""Radial-profile proportionality loss L_rad: d_z follows lambda x d_Upsilon."""

from __future__ import annotations

import torch

from mummi_ml.metric.losses.distances import pairwise_distances

__all__ = ["radial_loss"]


def radial_loss(
    z: torch.Tensor,
    upsilon: torch.Tensor,
    lambda_rad: float = 0.1,
    dist: torch.Tensor | None = None,
) -> torch.Tensor:
    """``mean over pairs i < j of |d_z(i, j) - lambda_rad * d_Upsilon(i, j)|``.

    Args:
        z: ``[B, d]`` embeddings (untransformed patches).
        upsilon: ``[B, F]`` radial profiles of the same patches (standardised units), F = 38 x
            channels.
        lambda_rad: proportionality factor (units of d_z per unit of d_Upsilon).
        dist: ``[B, B]`` pairwise distances of ``z`` when already computed (reused).

    Returns:
        Scalar tensor; 0 (zero gradient) for fewer than two patches.
    """
    if z.dim() != 2 or upsilon.dim() != 2 or upsilon.shape[0] != z.shape[0]:
        raise ValueError(
            f"radial_loss: expected z [B, d] and upsilon [B, F], got {list(z.shape)} and "
            f"{list(upsilon.shape)}"
        )
    b = z.shape[0]
    if b < 2:
        return z.sum() * 0.0
    dist = pairwise_distances(z) if dist is None else dist  # [B, B]
    with torch.no_grad():
        d_u = torch.cdist(upsilon.double(), upsilon.double()).to(z.dtype)  # [B, B]
        upper = torch.ones(b, b, dtype=torch.bool, device=z.device).triu_(1)  # pairs i < j
    # a masked sum over the matrix (no index gather whose backward is an index_put)
    dev = (dist - lambda_rad * d_u).abs()
    return torch.where(upper, dev, 0.0).sum() / (b * (b - 1) // 2)
