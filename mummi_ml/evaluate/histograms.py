"""Streaming 2-D histograms over all pairs: distance in one representation against distance in
another (d_z vs d_Upsilon, d_z vs d_mu), with the running mean and std of the second per bin of
the first. One blocked pass; memory independent of the number of pairs."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from mummi_ml.evaluate.pairs import (
    as_points,
    default_block_rows,
    iter_upper_pair_blocks,
    pick_device,
    upper_pair_pieces,
)

__all__ = ["PairHistogram2D", "pair_histogram_2d"]


@dataclass(frozen=True)
class PairHistogram2D:
    """counts [nx, ny] of pairs by (d_x, d_y); x_edges [nx+1], y_edges [ny+1]; per x bin the
    mean and std of d_y (NaN where empty)."""

    counts: np.ndarray
    x_edges: np.ndarray
    y_edges: np.ndarray
    y_mean: np.ndarray
    y_std: np.ndarray

    @property
    def y_marginal(self) -> np.ndarray:
        """Histogram of d_y over all pairs [ny]."""
        return self.counts.sum(0)


def _bound(x: torch.Tensor) -> float:
    return 2.0 * float(torch.linalg.vector_norm(x - x.mean(0), dim=1).max())


def pair_histogram_2d(
    a, b, bins: tuple[int, int] = (200, 200), device=None, block_rows: int | None = None
) -> PairHistogram2D:
    """Histogram of (d_a, d_b) over all pairs of rows of ``a`` [N, da] and ``b`` [N, db]
    (d_a on the x axis). Ranges: [0, an upper bound of the largest distance]."""
    dev = pick_device(device)
    at, bt = as_points(a, "a", dev), as_points(b, "b", dev)
    n = at.shape[0]
    nx, ny = bins
    xmax, ymax = max(_bound(at), 1e-12), max(_bound(bt), 1e-12)
    counts = torch.zeros(nx * ny, dtype=torch.float64, device=dev)
    s1 = torch.zeros(nx, dtype=torch.float64, device=dev)
    s2 = torch.zeros(nx, dtype=torch.float64, device=dev)
    rows = block_rows or default_block_rows(n, bytes_per_row_entry=48)
    for i0, i1 in iter_upper_pair_blocks(n, rows):
        for da, db in zip(
            upper_pair_pieces(at, i0, i1), upper_pair_pieces(bt, i0, i1), strict=True
        ):
            ix = (da * (nx / xmax)).long().clamp_(0, nx - 1)
            iy = (db * (ny / ymax)).long().clamp_(0, ny - 1)
            counts += torch.bincount(ix * ny + iy, minlength=nx * ny).to(torch.float64)
            s1.index_add_(0, ix, db)
            s2.index_add_(0, ix, db * db)
    c = counts.reshape(nx, ny).cpu().numpy()
    cx = c.sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = s1.cpu().numpy() / cx
        std = np.sqrt(np.maximum(s2.cpu().numpy() / cx - mean**2, 0.0))
    return PairHistogram2D(c, np.linspace(0, xmax, nx + 1), np.linspace(0, ymax, ny + 1), mean, std)
