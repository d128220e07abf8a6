"""Candidates waiting outside the lazy greedy's active set, ordered by their novelty bound.

A candidate's *bound* is its novelty counted against the picks it has seen: an upper bound of
its true novelty (novelty only falls). The lazy greedy (:mod:`mummi_ml.selector.greedy`) keeps
exact novelty only for candidates whose bound is above a per-class threshold ``T[c]``; the rest
wait here, and when ``T[c]`` is lowered every waiting class-c candidate with a bound above the
new threshold is handed back. Two containers do that without per-candidate Python work:

* :class:`BoundLevels` holds the pool as it was when selection started: candidates sorted
  (one radix sort of 16-bit keys) into geometric levels of bound per class, so taking every
  candidate above a threshold is a slice.
* :class:`SetAside` holds candidates that left the active set (their bound fell below the
  threshold): appended in chunks, merged now and then into a part sorted the same way, so that
  taking is mostly a slice.
"""

from __future__ import annotations

import numpy as np

from mummi_ml.patch.constants import N_CLASSES

__all__ = ["BoundLevels", "SetAside", "bound_levels", "levels_for"]

LEVELS = 4096
"""Bound levels per class (level 0: infinite bounds; the rest geometric, 0.25% apart), for up
to 7 classes; with more classes (selection groups) fewer, so that keys fit int16."""
_RATIO_LOG = np.log1p(0.0025)
assert N_CLASSES * LEVELS <= np.iinfo(np.int16).max  # keys fit int16: numpy radix-sorts them


def levels_for(n_classes: int) -> int:
    """Bound levels per class for ``n_classes`` classes: ``class * levels + level`` and the
    key after the last class fit int16 (numpy radix-sorts int16). Fewer levels only make the
    levels coarser (more candidates per take), never the picks different."""
    return min(LEVELS, int(np.iinfo(np.int16).max) // max(1, int(n_classes)))


def bound_levels(bounds: np.ndarray, top: float, levels: int = LEVELS) -> np.ndarray:
    """Level of each bound: int16 ``[n]``; 0 for ``inf``, then 1, 2, ... every 0.25% below
    ``top`` (> 0), ``levels - 1`` for zero and anything smaller. Non-decreasing as the bound
    falls, up to rounding of at most one level at a level edge."""
    with np.errstate(divide="ignore", invalid="ignore"):  # log(0) = -inf
        lev = np.log(np.asarray(bounds, dtype=np.float64))
        lev *= -1.0 / _RATIO_LOG
        lev += np.log(top) / _RATIO_LOG + 1.0
    np.floor(lev, out=lev)
    np.maximum(lev, 0, out=lev)  # -inf (infinite bounds) -> 0
    np.minimum(lev, levels - 1, out=lev)  # zero bounds -> the last level
    return lev.astype(np.int16)


def _class_keys(bounds: np.ndarray, classes: np.ndarray, top: float,
                levels: int = LEVELS) -> np.ndarray:
    """int16 sort keys ``class * levels + level``: by class, then highest bounds first."""
    key = bound_levels(bounds, top, levels)
    key += np.asarray(classes).astype(np.int16) * np.int16(levels)
    return key


class BoundLevels:
    """The live candidates of a pool sorted by class, then bound level (highest bounds first).

    Args:
        bounds: float64 ``[n]`` novelty bounds of every pool row (``inf`` allowed; >= 0).
        classes: ``[n]`` their classes (0..N_CLASSES-1).
        alive: bool ``[n]``: rows that are candidates (the others are never taken).
        n_classes: number of classes (selection groups).
    """

    def __init__(self, bounds: np.ndarray, classes: np.ndarray, alive: np.ndarray,
                 n_classes: int = N_CLASSES):
        self.nc = nc = int(n_classes)
        self.levels = L = levels_for(nc)
        top = float(bounds.max(initial=0.0, where=alive)) if len(bounds) else 0.0
        if not np.isfinite(top):
            top = float(bounds.max(initial=0.0, where=alive & np.isfinite(bounds)))
        self.top = top if top > 0 else 1.0
        key = _class_keys(bounds, classes, self.top, L)
        key[~alive] = nc * L  # a bin after every class: never taken
        self._order = np.argsort(key, kind="stable")
        self.starts = np.zeros(nc * L + 2, dtype=np.int64)
        np.cumsum(np.bincount(key, minlength=nc * L + 1), out=self.starts[1:])
        # tail_max[c, l]: the largest bound of class c in levels >= l (-inf: none left)
        level_max = np.full(nc * L + 1, -np.inf)
        np.maximum.at(level_max, key, bounds)
        level_max = level_max[:-1].reshape(nc, L)
        tail = np.maximum.accumulate(level_max[:, ::-1], axis=1)[:, ::-1]
        self.tail_max = np.concatenate([tail, np.full((nc, 1), -np.inf)], axis=1)
        self.ptr = np.zeros(nc, dtype=np.int64)

    def threshold(self, c: int) -> float:
        """The largest bound of a class-c candidate not yet taken (-inf if none)."""
        return float(self.tail_max[c, self.ptr[c]])

    def take(self, c: int, t: float, at_least: int = 0) -> np.ndarray:
        """Pool indices of class c with a bound above ``t`` (whole levels: a few at or below
        ``t`` may come too), and at least ``at_least`` of them if that many are left. Afterwards
        every class-c candidate left has a bound <= ``t``."""
        lo, L = int(self.ptr[c]), self.levels
        row = self.starts[c * L : (c + 1) * L + 1]
        by_bound = int(np.searchsorted(-self.tail_max[c], -t, side="left"))
        by_count = int(np.searchsorted(row, row[lo] + at_least, side="left"))
        hi = min(L, max(lo, by_bound, by_count))
        self.ptr[c] = hi
        return self._order[row[lo] : row[hi]]


class SetAside:
    """Candidates put aside with a bound, handed back when a threshold falls below it.

    Chunks are pushed unsorted; when the unsorted part outgrows half of the sorted part the two
    are merged by one radix sort on (class, bound level), so each candidate is sorted O(log n)
    times and a take is a slice per class plus a filter of the unsorted chunks.

    Args:
        top: the level scale (:func:`bound_levels`), e.g. ``BoundLevels.top``.
        n_classes: number of classes (selection groups).
    """

    def __init__(self, top: float, n_classes: int = N_CLASSES) -> None:
        self.top = float(top)
        self.nc = int(n_classes)
        self.levels = levels_for(self.nc)
        self._idx = np.zeros(0, np.int64)
        self._b = np.zeros(0, np.float64)
        self._key = np.zeros(0, np.int16)
        self._seg = np.zeros(self.nc + 1, np.int64)  # class c: sorted rows [seg[c], seg[c+1])
        self._ptr = np.zeros(self.nc, np.int64)  # class c: rows before ptr[c] were taken
        self._cmax = np.full(self.nc, -np.inf)  # no sorted class-c row has a larger bound
        self._new: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        self._n_new = 0

    def _n_sorted(self) -> int:
        return int((self._seg[1:] - self._ptr).sum())

    def __len__(self) -> int:
        return self._n_sorted() + self._n_new

    def push(self, idx: np.ndarray, bounds: np.ndarray, classes: np.ndarray) -> None:
        """Put aside pool indices ``idx`` with their ``bounds`` and ``classes``."""
        if len(idx):
            self._new.append((idx, bounds, classes.astype(np.int8, copy=False)))
            self._n_new += len(idx)
        if len(self._new) > 8:  # one unsorted chunk: take's loop over chunks stays short
            self._new = [tuple(np.concatenate([p[k] for p in self._new]) for k in range(3))]

    def _merge(self) -> None:
        keep = [np.arange(self._ptr[c], self._seg[c + 1]) for c in range(self.nc)]
        k = np.concatenate(keep)
        ni, nb, nc = (np.concatenate([p[j] for p in self._new]) for j in range(3))
        i = np.concatenate([self._idx[k], ni])
        b = np.concatenate([self._b[k], nb])
        key = np.concatenate([self._key[k], _class_keys(nb, nc, self.top, self.levels)])
        o = np.argsort(key, kind="stable")
        self._idx, self._b, self._key = i[o], b[o], key[o]
        self._seg = np.searchsorted(self._key, np.arange(self.nc + 1) * self.levels)
        self._ptr = self._seg[:-1].copy()
        cls_sorted = np.repeat(np.arange(self.nc), np.diff(self._seg))
        self._cmax = np.full(self.nc, -np.inf)
        np.maximum.at(self._cmax, cls_sorted, self._b)
        self._new, self._n_new = [], 0

    def upper_bound(self, c: int) -> float:
        """A value no class-c candidate set aside has a bound above (-inf if none)."""
        top = float(self._cmax[c]) if self._ptr[c] < self._seg[c + 1] else -np.inf
        for _, nb, nc in self._new:
            sel = nb[nc == c]
            if len(sel):
                top = max(top, float(sel.max()))
        return top

    def take(self, thresholds: np.ndarray) -> np.ndarray:
        """Remove and return the pool indices whose bound is above their class's threshold
        (``thresholds``: float64 ``[N_CLASSES]``)."""
        if self._n_new and self._n_new > self._n_sorted() // 2:
            self._merge()
        out = []
        back = []
        for c in range(self.nc):
            lo, hi, t = int(self._ptr[c]), int(self._seg[c + 1]), float(thresholds[c])
            if lo == hi or t >= self._cmax[c]:
                continue
            if t == -np.inf:
                cut = hi
            else:  # a bound above t is at most one level (rounding) below t's level
                last = int(bound_levels(np.array([t]), self.top, self.levels)[0]) + 1
                cut = lo + int(np.searchsorted(self._key[lo:hi], c * self.levels + last + 1))
            up = self._b[lo:cut] > t
            out.append(self._idx[lo:cut][up])
            if not up.all():
                down = ~up
                back.append((self._idx[lo:cut][down], self._b[lo:cut][down],
                             np.full(int(down.sum()), c, np.int8)))
            self._ptr[c] = cut
        keep = []
        for ni, nb, nc in self._new:
            up = nb > thresholds[nc]
            out.append(ni[up])
            if not up.all():
                keep.append((ni[~up], nb[~up], nc[~up]))
        self._new = keep + back
        self._n_new = sum(len(p[0]) for p in self._new)
        return np.concatenate(out) if out else np.zeros(0, np.int64)
