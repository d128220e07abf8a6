"""The candidate pool of one rank: struct-of-arrays, no per-patch Python objects."""

from __future__ import annotations

import numpy as np

__all__ = ["CandidatePool", "POOL_FIELDS"]

POOL_FIELDS: dict[str, type] = {
    "ids": np.uint64,  # patch id
    "classes": np.int8,  # protein class 0..3
    "seen": np.int64,  # number of picks (of the selected set) already counted in dk
    "src": np.int32,  # payload location: rank directory of the segment file,
    "seg": np.int32,  # segment number,
    "row": np.int32,  # row in the segment
}


class CandidatePool:
    """Candidates held by one rank, in growable numpy arrays.

    Per candidate: id (uint64), class (int8), embedding ``z`` (float32 ``[d]``), the ``kk``
    smallest distances to selected patches counted so far ``dk`` (float64 ``[kk]``, ascending,
    ``inf`` when unknown; an upper bound of the true ones), ``seen`` (how many picks dk counts)
    and the payload location (src, seg, row). Payloads themselves live on disk.

    Args:
        dim: embedding dimension d.
        kk: neighbours kept per candidate (1 for novelty="nearest").
    """

    def __init__(self, dim: int, kk: int = 1):
        self.dim, self.kk = int(dim), int(kk)
        self._n = 0
        self._cap = 0
        self._z = np.zeros((0, self.dim), dtype=np.float32)
        self._dk = np.zeros((0, self.kk), dtype=np.float64)
        self._a = {k: np.zeros(0, dtype=dt) for k, dt in POOL_FIELDS.items()}

    def __len__(self) -> int:
        return self._n

    @property
    def bytes_per_candidate(self) -> int:
        """Memory of one candidate in the pool arrays (bytes, excluding over-allocation)."""
        return 4 * self.dim + 8 * self.kk + sum(np.dtype(t).itemsize for t in POOL_FIELDS.values())

    @property
    def nbytes(self) -> int:
        """Memory held by the pool arrays now, including spare capacity (bytes)."""
        return self._z.nbytes + self._dk.nbytes + sum(a.nbytes for a in self._a.values())

    def _reserve(self, n: int) -> None:
        if n <= self._cap:
            return
        cap = max(n, self._cap + self._cap // 2, 1024)
        z = np.empty((cap, self.dim), dtype=np.float32)
        z[: self._n] = self._z[: self._n]
        dk = np.empty((cap, self.kk), dtype=np.float64)
        dk[: self._n] = self._dk[: self._n]
        self._z, self._dk = z, dk
        for k, arr in self._a.items():
            new = np.empty(cap, dtype=arr.dtype)
            new[: self._n] = arr[: self._n]
            self._a[k] = new
        self._cap = cap

    def add(self, z: np.ndarray, dk: np.ndarray, **fields: np.ndarray) -> np.ndarray:
        """Append candidates; returns their indices (int64 ``[p]``).

        Args:
            z: float32 ``[p, d]``; dk: float64 ``[p, kk]``; fields: one array per POOL_FIELDS key.
        """
        p = len(z)
        self._reserve(self._n + p)
        sl = slice(self._n, self._n + p)
        self._z[sl] = z
        self._dk[sl] = dk
        for k, arr in self._a.items():
            arr[sl] = fields[k]
        self._n += p
        return np.arange(sl.start, sl.stop)

    def keep(self, mask: np.ndarray) -> None:
        """Keep only the candidates where ``mask`` (bool ``[n]``) is true, in order."""
        idx = np.flatnonzero(mask)
        p = len(idx)
        self._z[:p] = self._z[idx]
        self._dk[:p] = self._dk[idx]
        for arr in self._a.values():
            arr[:p] = arr[idx]
        self._n = p

    def remove(self, idx: np.ndarray) -> None:
        """Remove candidates ``idx`` (int ``[p]``) by moving the last ones into the holes: O(p);
        the order of the remaining candidates changes."""
        idx = np.unique(np.asarray(idx, dtype=np.int64))
        p = len(idx)
        if p == 0:
            return
        n = self._n
        gone = np.zeros(p, dtype=bool)
        gone[idx[idx >= n - p] - (n - p)] = True
        movers = np.arange(n - p, n)[~gone]  # live candidates in the last p slots
        holes = idx[idx < n - p]
        self._z[holes] = self._z[movers]
        self._dk[holes] = self._dk[movers]
        for arr in self._a.values():
            arr[holes] = arr[movers]
        self._n = n - p

    def set_embeddings(self, z: np.ndarray, dk: np.ndarray, seen: int) -> None:
        """Replace every candidate's embedding (a new model, possibly of another dimension) and
        its novelty, in place (the object stays the same for its holders).

        Args:
            z: float32 ``[n, d']`` new embeddings in pool order; dk: float64 ``[n, kk]`` their
                exact distances to the selected set; seen: picks those distances count.
        """
        if len(z) != self._n or len(dk) != self._n:
            raise ValueError(f"expected {self._n} rows, got {len(z)} and {len(dk)}")
        self.dim = int(z.shape[1])
        self._z = np.empty((self._cap, self.dim), dtype=np.float32)
        self._z[: self._n] = z
        self._dk[: self._n] = dk
        self._a["seen"][: self._n] = seen

    @property
    def z(self) -> np.ndarray:
        return self._z[: self._n]

    @property
    def dk(self) -> np.ndarray:
        return self._dk[: self._n]

    def __getattr__(self, name: str) -> np.ndarray:
        a = self.__dict__.get("_a")
        if a is not None and name in a:
            return a[name][: self._n]
        raise AttributeError(name)

    def to_arrays(self) -> dict[str, np.ndarray]:
        """Plain arrays (views) for a checkpoint."""
        out = {k: getattr(self, k) for k in POOL_FIELDS}
        out["z"], out["dk"] = self.z, self.dk
        return out

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray], dim: int, kk: int) -> CandidatePool:
        pool = cls(dim, kk)
        pool.add(arrays["z"], arrays["dk"], **{k: arrays[k] for k in POOL_FIELDS})
        return pool
