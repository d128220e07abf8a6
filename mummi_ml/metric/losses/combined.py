"""The weighted sum L = w_inv L_inv + w_rad L_rad + w_lab L_lab of the three terms."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from mummi_ml.metric.config import LossConfig
from mummi_ml.metric.losses.distances import pairwise_distances
from mummi_ml.metric.losses.invariance import invariance_from_distances, view_distances
from mummi_ml.metric.losses.label import label_loss
from mummi_ml.metric.losses.radial import radial_loss

__all__ = ["LossTerms", "metric_loss"]


@dataclass
class LossTerms:
    """The total loss and its (unweighted) terms; a term whose weight is 0 is not computed (0.0)."""

    total: torch.Tensor
    inv: torch.Tensor
    rad: torch.Tensor
    lab: torch.Tensor

    def as_floats(self) -> dict[str, float]:
        """``{"loss": ..., "inv": ..., "rad": ..., "lab": ...}`` as Python floats."""
        return {
            "loss": float(self.total.detach()),
            "inv": float(self.inv.detach()),
            "rad": float(self.rad.detach()),
            "lab": float(self.lab.detach()),
        }


def metric_loss(
    z_views: torch.Tensor, labels: torch.Tensor, upsilon: torch.Tensor | None, cfg: LossConfig
) -> LossTerms:
    """The training loss of one (global) batch.

    Args:
        z_views: ``[B, 1 + T, d]`` embeddings of the patches (view 0) and their transformations;
            ``[B, 1, d]`` is enough when ``cfg.w_inv == 0``.
        labels: int ``[B]`` protein classes.
        upsilon: ``[B, F]`` radial profiles (None allowed when ``cfg.w_rad == 0``).
        cfg: weights, margins, lambda and label mining.
    """
    if z_views.dim() != 3:
        raise ValueError(f"metric_loss: z_views expected [B, 1+T, d], got {list(z_views.shape)}")
    z = z_views[:, 0]  # [B, d]
    zero = z.sum() * 0.0
    b, k, _ = z_views.shape
    # one distance computation serves all three terms: anchors to every view [B, B, 1+T]
    # (its view-0 slice is the anchors' own [B, B] matrix), or only [B, B] without L_inv
    if cfg.w_inv > 0 and b >= 2 and k >= 2:
        d_all = view_distances(z_views)
        inv, dist = invariance_from_distances(d_all, cfg.alpha_inv), d_all[:, :, 0]
    else:
        inv, dist = zero, (pairwise_distances(z) if cfg.w_rad > 0 or cfg.w_lab > 0 else None)
    if cfg.w_rad > 0:
        if upsilon is None:
            raise ValueError("metric_loss: upsilon is required when w_rad > 0")
        rad = radial_loss(z, upsilon, cfg.lambda_rad, dist)
    else:
        rad = zero
    lab = label_loss(z, labels, cfg.alpha_lab, cfg.label_mining, dist) if cfg.w_lab > 0 else zero
    total = cfg.w_inv * inv + cfg.w_rad * rad + cfg.w_lab * lab
    return LossTerms(total, inv, rad, lab)
