"""The lazy greedy's active set: the candidates whose novelty is kept exact after every pick."""

from __future__ import annotations

import numpy as np

from mummi_ml.selector.distance import distances_to_point, merge_nearest, score

__all__ = ["ActiveSet"]


class ActiveSet:
    """Growable struct-of-arrays of active candidates.

    Embeddings are stored contiguously in float64 (``z``: ``[capacity, d]``), so the update
    after a pick is one :func:`distances_to_point` with no gather or conversion. A row whose
    ``dk`` is ``-inf`` is a candidate that was picked: it never wins again and is dropped at the
    next :meth:`keep`.

    Attributes (first ``n`` entries valid):
        idx: int64 pool indices; cls: int8 classes; z: float64 ``[capacity, d]`` embeddings;
        dk: float64 ``[capacity, kk]`` the kk nearest distances to the selected set (exact,
        ascending).
    """

    def __init__(self, dim: int, kk: int):
        self.dim, self.kk, self.n = int(dim), int(kk), 0
        self.idx = np.zeros(0, np.int64)
        self.cls = np.zeros(0, np.int8)
        self.z = np.zeros((0, self.dim), np.float64)
        self.dk = np.zeros((0, self.kk), np.float64)

    def _reserve(self, n: int) -> None:
        cap = len(self.idx)
        if n <= cap:
            return
        cap = max(n, 2 * cap, 1024)
        for name in ("idx", "cls", "dk", "z"):
            old = getattr(self, name)
            new = np.empty((cap,) + old.shape[1:], old.dtype)
            new[: self.n] = old[: self.n]
            setattr(self, name, new)

    def add(self, idx: np.ndarray, z: np.ndarray, dk: np.ndarray, cls: np.ndarray) -> None:
        """Append candidates: pool indices ``[c]``, embeddings ``[c, d]``, exact ``dk``
        ``[c, kk]``, classes ``[c]``."""
        c = len(idx)
        self._reserve(self.n + c)
        sl = slice(self.n, self.n + c)
        self.idx[sl], self.dk[sl], self.cls[sl], self.z[sl] = idx, dk, cls, z
        self.n += c

    def update(self, zp: np.ndarray) -> None:
        """Count a new pick ``zp`` (``[d]``) in every active candidate's nearest distances."""
        n = self.n
        if n == 0:
            return
        d = distances_to_point(self.z[:n], zp)
        if self.kk == 1:
            np.minimum(self.dk[:n, 0], d, out=self.dk[:n, 0])
        else:
            self.dk[:n] = merge_nearest(self.dk[:n], d[:, None])

    def scores(self, n_selected: int) -> np.ndarray:
        """Exact novelty of the active candidates: float64 ``[n]`` (-inf: picked)."""
        return score(self.dk[: self.n], n_selected)

    def mark_picked(self, pos: int) -> None:
        """The candidate at position ``pos`` was picked: it never wins again."""
        self.dk[pos] = -np.inf

    def keep(self, mask: np.ndarray) -> None:
        """Keep only positions where ``mask`` (bool ``[n]``) is true, in order."""
        k = np.flatnonzero(mask)
        self.idx[: len(k)] = self.idx[k]
        self.cls[: len(k)] = self.cls[k]
        self.dk[: len(k)] = self.dk[k]
        self.z[: len(k)] = self.z[k]
        self.n = len(k)
