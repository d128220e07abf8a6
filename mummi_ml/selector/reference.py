"""Plain single-process selection methods: the reference the distributed greedy must equal, and
the naive re-rank-everything method (what MuMMI's DynIm does per pick) for benchmarks."""

from __future__ import annotations

import numpy as np

from mummi_ml.selector.distance import best_of, distances, merge_nearest, score
from mummi_ml.selector.groups import SelectionGroups, random_keys

__all__ = ["reference_select", "naive_rerank_select", "topk_once_select"]


def _check(z: np.ndarray, ids: np.ndarray, classes: np.ndarray | None) -> np.ndarray:
    if z.ndim != 2 or len(ids) != len(z):
        raise ValueError(f"z, ids: expected [n, d] and [n], got {list(z.shape)} and {len(ids)}")
    if classes is None:
        return np.zeros(len(z), dtype=np.int64)
    if len(classes) != len(z):
        raise ValueError(f"classes: expected length {len(z)}, got {len(classes)}")
    return np.asarray(classes, dtype=np.int64)


def reference_select(
    z: np.ndarray,
    ids: np.ndarray,
    k: int,
    classes: np.ndarray | None = None,
    selected_z: np.ndarray | None = None,
    selected_classes: np.ndarray | None = None,
    knn_k: int = 1,
    quotas: np.ndarray | list[float] | None = None,
    groups: SelectionGroups | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Greedy farthest-point selection, eagerly updating every candidate after every pick.

    A random pick (``groups.random_picks``) is the allowed candidate with the smallest
    ``random_keys(id, groups.seed)`` (ties: smallest id); its novelty is still reported.

    Args:
        z: float32 ``[n, d]`` candidate embeddings; ids: uint64 ``[n]`` unique patch ids.
        k: picks wanted.
        classes: int ``[n]`` protein classes, or selection groups with ``groups``.
        selected_z: ``[m, d]`` patches selected earlier (novelty is measured against them too).
        selected_classes: ``[m]`` their classes (quota bookkeeping).
        knn_k: 1 = distance to the nearest selected; > 1 = DynIm's mean over the knn_k nearest.
        quotas: class weights ``[N_CLASSES]`` or None (ignored when ``groups`` is given).
        groups: selection groups (queues, bins, quotas, random picks); default: the four
            classes with ``quotas``.

    Returns:
        ``(positions int64 [p], novelty float64 [p])``: picked candidate positions in pick order
        (p < k only if candidates ran out) and their novelty when picked.
    """
    cls = _check(z, ids, classes)
    groups = groups if groups is not None else SelectionGroups.classes(quotas)
    G = groups.n
    n = len(z)
    dk = np.full((n, knn_k), np.inf)
    m = 0
    counts = np.zeros(G, dtype=np.int64)
    if selected_z is not None and len(selected_z):
        dk = merge_nearest(dk, distances(z, selected_z))
        m = len(selected_z)
        if selected_classes is not None:
            counts += np.bincount(np.asarray(selected_classes, np.int64), minlength=G)[:G]
    # the order of random picks: by key, then by id
    rand_order = np.lexsort((np.asarray(ids, np.uint64), random_keys(ids, groups.seed)))
    alive = np.ones(n, dtype=bool)
    picks, nov = [], []
    for _ in range(k):
        avail = np.bincount(cls[alive], minlength=G)[:G]
        allowed = groups.allowed(counts, avail)
        if allowed is None:
            break
        s = score(dk, m)
        ok = alive & allowed[cls]
        if groups.is_random(counts, allowed):
            first = np.flatnonzero(ok[rand_order])
            b = int(rand_order[first[0]]) if len(first) else -1
        else:
            s[~ok] = -np.inf
            b = best_of(s, ids)
        if b < 0:
            break
        picks.append(b)
        nov.append(s[b])
        alive[b] = False
        counts[cls[b]] += 1
        dk = merge_nearest(dk, distances(z, z[b : b + 1]))
        m += 1
    return np.array(picks, dtype=np.int64), np.array(nov, dtype=np.float64)


def naive_rerank_select(
    z: np.ndarray, ids: np.ndarray, k: int, selected_z: np.ndarray | None = None
) -> np.ndarray:
    """Farthest-point picks recomputing every candidate's novelty against the whole selected set
    after every pick (a KD-tree over the selected set, as a re-ranking sampler does).

    Returns the picked positions (int64 ``[p]``). Same picks as :func:`reference_select` up to
    floating-point ties; O(n log m) per pick.
    """
    from scipy.spatial import cKDTree

    sel = [] if selected_z is None else list(np.asarray(selected_z, np.float64))
    alive = np.ones(len(z), dtype=bool)
    picks = []
    for _ in range(k):
        if sel:
            nov, _ = cKDTree(np.array(sel)).query(z, k=1)
        else:
            nov = np.full(len(z), np.inf)
        nov = np.where(alive, nov, -np.inf)
        b = best_of(nov, ids)
        if b < 0:
            break
        picks.append(b)
        alive[b] = False
        sel.append(z[b].astype(np.float64))
    return np.array(picks, dtype=np.int64)


def topk_once_select(z: np.ndarray, selected_z: np.ndarray, k: int) -> np.ndarray:
    """DynIm's per-call behaviour: rank once by distance to the selected set, take the top k
    without re-ranking between picks (near-duplicates get picked together). Positions ``[k]``."""
    from scipy.spatial import cKDTree

    nov, _ = cKDTree(np.asarray(selected_z, np.float64)).query(z, k=1)
    return np.argsort(-nov, kind="stable")[:k]
