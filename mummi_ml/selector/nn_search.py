"""Exact k-nearest-selected search for arriving candidates, with measured backends.

On this machine (see benchmarks/bench_selector.py) scipy's ``cKDTree`` is the fastest exact CPU
search in low dimension; faiss ``IndexFlatL2`` and torch are offered, torch on a GPU being the
``auto`` choice when one is present. Whatever the backend finds, the returned distances are
recomputed with :func:`pair_distances`, so they are bit-identical to the reference's.
"""

from __future__ import annotations

import numpy as np

from mummi_ml.selector.distance import distances, merge_nearest, pair_distances
from mummi_ml.selector.errors import SelectorError

__all__ = ["NearestSelected", "BACKENDS", "resolve_backend"]

BACKENDS = ("ckdtree", "faiss", "torch")
_BRUTE_MAX = 2048  # selected sets up to this size are searched by brute force (exact cdist)


def resolve_backend(name: str) -> str:
    """``auto`` -> ``torch`` if a CUDA device is present, else ``ckdtree``."""
    if name == "auto":
        try:
            import torch

            return "torch" if torch.cuda.is_available() else "ckdtree"
        except ImportError:
            return "ckdtree"
    if name not in BACKENDS:
        raise SelectorError(
            f"nn_backend: expected one of auto, {', '.join(BACKENDS)}; got {name!r}"
        )
    return name


class NearestSelected:
    """The ``kk`` nearest selected patches of query embeddings.

    Args:
        kk: neighbours wanted (1 for novelty="nearest").
        backend: ``auto`` | ``ckdtree`` | ``faiss`` | ``torch``.
        brute_max: selected sets up to this size are searched by brute force.
    """

    def __init__(self, kk: int = 1, backend: str = "auto", brute_max: int = _BRUTE_MAX):
        self.kk = int(kk)
        self.backend = resolve_backend(backend)
        self.brute_max = int(brute_max)
        self._index = None
        self._m_index = 0  # selected patches inside the index (the rest is searched brute force)

    def _build(self, s: np.ndarray) -> None:
        m = len(s)
        if self.backend == "ckdtree":
            from scipy.spatial import cKDTree

            self._index = cKDTree(np.asarray(s, dtype=np.float64))
        elif self.backend == "faiss":
            import faiss

            index = faiss.IndexFlatL2(s.shape[1])
            index.add(np.ascontiguousarray(s, dtype=np.float32))
            self._index = index
        else:
            import torch

            dev = "cuda" if torch.cuda.is_available() else "cpu"
            self._index = torch.as_tensor(np.asarray(s, np.float32), device=dev)
        self._m_index = m

    def _search(self, q: np.ndarray, k: int) -> np.ndarray:
        """Indices ``[n, k]`` of (approximately, up to ties) nearest indexed points."""
        if self.backend == "ckdtree":
            _, idx = self._index.query(np.asarray(q, np.float64), k=k)
            return np.asarray(idx).reshape(len(q), k)
        if self.backend == "faiss":
            _, idx = self._index.search(np.ascontiguousarray(q, dtype=np.float32), k)
            return idx
        import torch

        out = []
        s = self._index
        for lo in range(0, len(q), 4096):
            qt = torch.as_tensor(np.asarray(q[lo : lo + 4096], np.float32), device=s.device)
            d = torch.cdist(qt, s)
            out.append(torch.topk(d, k, dim=1, largest=False).indices.cpu().numpy())
        return np.concatenate(out)

    def query(self, q: np.ndarray, s: np.ndarray) -> np.ndarray:
        """Distances from each query to its ``kk`` nearest selected patches.

        Args:
            q: float32 ``[n, d]`` query embeddings.
            s: float32 ``[m, d]`` the whole selected set (grows between calls; never shrinks).

        Returns:
            float64 ``[n, kk]`` ascending per row; ``inf`` where fewer than kk are selected.
        """
        n, m = len(q), len(s)
        dk = np.full((n, self.kk), np.inf)
        if n == 0 or m == 0:
            return dk
        if m <= self.brute_max:
            return merge_nearest(dk, distances(q, s))
        if self._index is None or m - self._m_index > max(1024, self._m_index // 8):
            self._build(s)
        mi = self._m_index
        k = min(self.kk, mi)
        idx = self._search(q, k)
        dk = merge_nearest(dk, pair_distances(q, np.asarray(s)[idx]))
        if m > mi:  # picks made since the index was built
            dk = merge_nearest(dk, distances(q, s[mi:m]))
        return dk
