"""Exact distances and k-nearest bookkeeping shared by every selection method.

All selection code (the reference, the lazy distributed greedy, the naive re-ranker) computes
distances with :func:`distances` and scores with :func:`score`, so that they agree bit for bit:
each pair's sum over embedding dimensions runs in the same order in float64, whatever the
batch shapes. The faster kernels the lazy greedy uses (:func:`nearest_distances`,
:func:`distances_to_point`, :func:`pair_distances`) compute the same sums and are tested to be
bit-identical to :func:`distances`.
"""

from __future__ import annotations

import numpy as np
from scipy.spatial.distance import cdist

__all__ = [
    "distances",
    "distances_to_point",
    "nearest_distances",
    "pair_distances",
    "merge_nearest",
    "score",
    "best_of",
    "MAX_BLOCK",
]

MAX_BLOCK = 1 << 22
"""Largest ``rows x cols`` distance block computed at once (float64: 32 MiB)."""


def distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Euclidean distances between rows (scipy ``cdist``: each pair summed over dimensions in
    order in float64, so a pair's distance does not depend on the batch it is computed in).

    Args:
        a: ``[n, d]`` embeddings (any float dtype).
        b: ``[p, d]`` embeddings.

    Returns:
        float64 ``[n, p]``.
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    n, p = len(a), len(b)
    if n == 0 or p == 0:
        return np.empty((n, p), dtype=np.float64)
    rows = max(1, MAX_BLOCK // p)
    if n <= rows:
        return cdist(a, b)
    out = np.empty((n, p), dtype=np.float64)
    for lo in range(0, n, rows):
        out[lo : lo + rows] = cdist(a[lo : lo + rows], b)
    return out


def nearest_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Each row's distance to its nearest row of ``b``: float64 ``[n]``, bit-identical to
    ``distances(a, b).min(axis=1)`` (``inf`` if ``b`` is empty).

    Squared distances (cdist's "sqeuclidean": the same float64 sum; ``(b - a)**2`` equals
    ``(a - b)**2`` exactly) are computed as ``[p, rows]`` blocks, minimised down the columns
    (contiguous, vectorised), and only the smallest is square-rooted (sqrt is correctly rounded
    and monotone): ~2x cheaper than ``distances(a, b).min(axis=1)``.

    Args:
        a: ``[n, d]``; b: ``[p, d]`` (any float dtype).
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    n, p = len(a), len(b)
    if p == 0:
        return np.full(n, np.inf)
    out = np.empty(n, dtype=np.float64)
    rows = max(1, (1 << 18) // p)  # a 2 MiB block: stays in cache
    for lo in range(0, n, rows):
        np.min(cdist(b, a[lo : lo + rows], "sqeuclidean"), axis=0, out=out[lo : lo + rows])
    return np.sqrt(out, out=out)


_ROWS = 1 << 15  # rows per chunk of distances_to_point (float64: 2.3 MiB at d = 9)


def distances_to_point(z: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Distances from every row of ``z`` to one point: float64 ``[n]``, bit-identical to
    ``distances(z, p[None])[:, 0]`` and ~3x faster on large ``n``.

    cdist spends ~30 ns per row of its first argument, so the point goes first
    (``(p - z)**2`` equals ``(z - p)**2`` exactly) and the rows are converted to float64 in
    chunks that stay in cache; squared distances, then one vectorised square root.

    Args:
        z: ``[n, d]`` embeddings (any float dtype).
        p: ``[d]`` the point.
    """
    z = np.asarray(z)
    q = np.asarray(p, dtype=np.float64).reshape(1, -1)
    out = np.empty(len(z), dtype=np.float64)
    for lo in range(0, len(z), _ROWS):
        chunk = np.asarray(z[lo : lo + _ROWS], dtype=np.float64)
        out[lo : lo + len(chunk)] = cdist(q, chunk, "sqeuclidean")[0]
    return np.sqrt(out, out=out)


def merge_nearest(dk: np.ndarray, dist: np.ndarray) -> np.ndarray:
    """Merge new distances into each row's sorted list of its ``kk`` smallest distances.

    Args:
        dk: float64 ``[n, kk]`` ascending per row (``inf`` where fewer than kk are known).
        dist: float64 ``[n, p]`` distances to selected patches not yet counted in ``dk``.

    Returns:
        float64 ``[n, kk]``, ascending per row.
    """
    kk = dk.shape[1]
    if dist.shape[1] == 0:
        return dk
    if kk == 1:
        return np.minimum(dk, dist.min(axis=1, keepdims=True))
    both = np.concatenate([dk, dist], axis=1)
    both = np.partition(both, kk - 1, axis=1)[:, :kk]
    both.sort(axis=1)
    return both


def score(dk: np.ndarray, n_selected: int) -> np.ndarray:
    """Novelty from the ``kk`` nearest distances: float64 ``[n]``.

    ``kk == 1`` (or fewer than kk patches selected so far): the distance to the nearest selected
    patch (``inf`` when none is selected). Otherwise DynIm's score: the mean of the kk smallest.
    Both only fall as patches are selected, which is what the lazy greedy relies on.
    """
    kk = dk.shape[1]
    if kk == 1 or n_selected < kk:
        return dk[:, 0].copy()
    s = dk[:, 0].copy()
    for j in range(1, kk):  # fixed summation order
        s += dk[:, j]
    return s / kk


def best_of(scores: np.ndarray, ids: np.ndarray) -> int:
    """Index of the largest score, ties broken by the smallest id; -1 if empty or all -inf."""
    if len(scores) == 0:
        return -1
    top = scores.max()
    if top == -np.inf:
        return -1
    cand = np.flatnonzero(scores == top)
    return int(cand[np.argmin(ids[cand])])


def pair_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Distances between each row of ``a`` and its own rows of ``b``, bit-identical to
    :func:`distances` (the same float64 sum over dimensions in order).

    Args:
        a: ``[n, d]``; b: ``[n, k, d]``.

    Returns:
        float64 ``[n, k]``.
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    acc = np.zeros(b.shape[:2], dtype=np.float64)
    for k in range(a.shape[1]):  # loop over embedding dimensions, not patches
        diff = a[:, k, None] - b[:, :, k]
        acc += diff * diff
    return np.sqrt(acc)
