"""Quick quality figures for per-epoch validation: overlap % and MARE on a subset.

(The full evaluation, with AUC, baselines and many more pairs, is ``mummi_ml.evaluate``.)
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["overlap_percent", "mare"]


def _pair_distances(z: torch.Tensor) -> torch.Tensor:
    iu = torch.triu_indices(len(z), len(z), offset=1)
    return torch.cdist(z.double(), z.double())[iu[0], iu[1]]  # [n(n-1)/2]


def overlap_percent(z_views: torch.Tensor) -> float:
    """Overlap %: share of pairs of distinct points closer than the largest d_z(x, rho(x)).

    Args:
        z_views: ``[n, 1 + T, d]`` embeddings of n points (view 0) and their transformations.
    """
    z0 = z_views[:, 0].double()
    tau = float(torch.linalg.vector_norm(z_views[:, 1:].double() - z0[:, None], dim=-1).max())
    d = _pair_distances(z0)
    return float((d <= tau).double().mean() * 100.0) if len(d) else 0.0


def mare(z: torch.Tensor, upsilon: np.ndarray | torch.Tensor, lambda_rad: float) -> float:
    """Median over pairs of ``|d_z - lambda d_Upsilon|`` (units of d_z)."""
    d_z = _pair_distances(z)
    d_u = _pair_distances(torch.as_tensor(np.asarray(upsilon)))
    return float(torch.median((d_z - lambda_rad * d_u).abs())) if len(d_z) else 0.0
