"""A set of uint64 patch ids in sorted numpy arrays (no per-id Python objects)."""

from __future__ import annotations

import numpy as np

__all__ = ["IdSet"]


class IdSet:
    """Membership test and insertion for uint64 ids; a large sorted array plus a small sorted
    buffer merged into it when it grows past an eighth of it (amortised O(log n) per id)."""

    def __init__(self, ids: np.ndarray | None = None):
        self._main = np.unique(np.asarray([] if ids is None else ids, dtype=np.uint64))
        self._buf = np.zeros(0, dtype=np.uint64)

    def __len__(self) -> int:
        return len(self._main) + len(self._buf)

    @staticmethod
    def _isin_sorted(sorted_arr: np.ndarray, q: np.ndarray) -> np.ndarray:
        if len(sorted_arr) == 0:
            return np.zeros(len(q), dtype=bool)
        pos = np.searchsorted(sorted_arr, q)
        pos[pos == len(sorted_arr)] = 0
        return sorted_arr[pos] == q

    def contains(self, ids: np.ndarray) -> np.ndarray:
        """bool ``[n]``: which ids are in the set."""
        q = np.asarray(ids, dtype=np.uint64)
        return self._isin_sorted(self._main, q) | self._isin_sorted(self._buf, q)

    def add(self, ids: np.ndarray) -> None:
        """Insert ids (duplicates are ignored)."""
        self._buf = np.union1d(self._buf, np.asarray(ids, dtype=np.uint64))
        if len(self._buf) > max(4096, len(self._main) // 8):
            self._main = np.union1d(self._main, self._buf)
            self._buf = np.zeros(0, dtype=np.uint64)

    def to_array(self) -> np.ndarray:
        """All ids, sorted."""
        return np.union1d(self._main, self._buf)
