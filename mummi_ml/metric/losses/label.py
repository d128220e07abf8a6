"""Label loss L_lab: patches of one protein class closer to each other than to other classes."""

from __future__ import annotations

from typing import Literal

import torch

from mummi_ml.metric.losses.distances import pairwise_distances

__all__ = ["label_loss"]


def label_loss(
    z: torch.Tensor,
    labels: torch.Tensor,
    alpha: float = 8.0,
    mining: Literal["batch_hard", "batch_all"] = "batch_hard",
    dist: torch.Tensor | None = None,
) -> torch.Tensor:
    """Triplet loss over class labels.

    - ``batch_hard``: for each anchor a with at least one positive (same class, p != a) and one
      negative (other class): ``max(0, alpha + max_p d(a, p) - min_n d(a, n))``, averaged over
      those anchors.
    - ``batch_all``: ``max(0, alpha + d(a, p) - d(a, n))`` averaged over every valid triplet
      (y_a == y_p, a != p, y_n != y_a).

    Args:
        z: ``[B, d]`` embeddings (untransformed patches).
        labels: int ``[B]`` class of each patch.
        alpha: margin alpha_lab (units of d_z).
        mining: ``batch_hard`` or ``batch_all``.
        dist: ``[B, B]`` pairwise distances of ``z`` when already computed (reused, not
            recomputed; :func:`~mummi_ml.metric.losses.pairwise_distances` of ``z``).

    Returns:
        Scalar tensor; 0 (zero gradient) when no valid triplet exists (e.g. a single class).
    """
    if z.dim() != 2 or labels.shape != (z.shape[0],):
        raise ValueError(
            f"label_loss: expected z [B, d] and labels [B], got {list(z.shape)} and "
            f"{list(labels.shape)}"
        )
    if mining not in ("batch_hard", "batch_all"):
        raise ValueError(f"label_loss: mining must be 'batch_hard' or 'batch_all', got {mining!r}")
    dist = pairwise_distances(z) if dist is None else dist  # [B, B]
    same = labels[:, None] == labels[None, :]  # [B, B]
    eye = torch.eye(len(labels), dtype=torch.bool, device=z.device)
    pos = same & ~eye
    neg = ~same
    if mining == "batch_hard":
        valid = pos.any(1) & neg.any(1)  # [B]
        if not bool(valid.any()):
            return z.sum() * 0.0
        d_pos = dist.masked_fill(~pos, float("-inf")).amax(1)  # [B]
        d_neg = dist.masked_fill(~neg, float("inf")).amin(1)  # [B]
        return torch.relu(alpha + d_pos[valid] - d_neg[valid]).mean()
    triplets = pos[:, :, None] & neg[:, None, :]  # [B(a), B(p), B(n)]
    if not bool(triplets.any()):
        return z.sum() * 0.0
    losses = torch.relu(alpha + dist[:, :, None] - dist[:, None, :])  # [B, B, B]
    return losses[triplets].mean()
