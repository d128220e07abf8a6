"""Importance weights of selected patches: ``1 +`` the number of unselected candidates whose
nearest selected patch it is (MuMMI reweights its feedback with them)."""

from __future__ import annotations

from typing import Any

import numpy as np

from mummi_ml.selector.collectives import allreduce_sum
from mummi_ml.selector.distance import distances

__all__ = ["importance_weights"]


def importance_weights(pool_z: np.ndarray, selected_z: np.ndarray, comm: Any = None) -> np.ndarray:
    """int64 ``[m]`` weights of the m selected patches (collective: sums every rank's pool).

    Args:
        pool_z: float32 ``[n, d]`` this rank's unselected candidates.
        selected_z: float32 ``[m, d]`` the selected set (same on every rank).

    Ties (a candidate equidistant from two selected patches) go to the earlier pick.
    """
    m = len(selected_z)
    counts = np.zeros(m, dtype=np.int64)
    if m and len(pool_z):
        rows = max(1, (1 << 22) // m)
        for lo in range(0, len(pool_z), rows):
            nearest = np.argmin(distances(pool_z[lo : lo + rows], selected_z), axis=1)
            counts += np.bincount(nearest, minlength=m)
    return 1 + allreduce_sum(comm, counts)
