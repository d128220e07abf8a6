"""Exact order statistics (the median) of a stream of values too large to hold at once.

The values (e.g. 450 million pair residuals) are produced block by block by a callable that can
replay the stream. Pass 1 counts them in a fine histogram over [lo, hi]; the bins holding the
wanted ranks are kept and, if they still hold more than ``cap`` values, refined by another
histogram pass restricted to them; a last pass gathers the few candidates and sorts them. Bin
indices are recomputed with identical arithmetic in every pass, so the selection is exact: the
result equals ``numpy.median`` of all values (mean of the two middle values for an even count).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch

__all__ = ["exact_median", "exact_kth_values"]

_N_BINS = 1 << 18
_CAP = 1 << 23  # candidates gathered in the final pass (8 M float64 = 64 MB)
_MAX_LEVELS = 8


@dataclass(frozen=True)
class _Level:
    lo: float
    scale: float  # bins per unit value
    n_bins: int
    b_lo: int
    b_hi: int

    def _position(self, v: torch.Tensor) -> torch.Tensor:
        return (v - self.lo) * self.scale

    def bins(self, v: torch.Tensor) -> torch.Tensor:
        """Bin index of each value, clamped to [0, n_bins - 1]."""
        return self._position(v).floor_().clamp_(0, self.n_bins - 1).long()

    def keep(self, v: torch.Tensor) -> torch.Tensor | None:
        """Mask of values whose bin is in [b_lo, b_hi] (None: all), with the same arithmetic as
        :meth:`bins` (floor(t) >= b <=> t >= b and floor(t) <= b <=> t < b + 1)."""
        t = self._position(v)
        mask = t >= self.b_lo if self.b_lo > 0 else None
        if self.b_hi < self.n_bins - 1:
            upper = t < self.b_hi + 1
            mask = upper if mask is None else mask.logical_and_(upper)
        return mask


def _restrict(v: torch.Tensor, levels: list[_Level]) -> torch.Tensor:
    for level in levels:
        if v.numel() == 0:
            break
        mask = level.keep(v)
        if mask is not None:
            v = v[mask]
    return v


def exact_kth_values(
    stream: Callable[[], Iterable[torch.Tensor]],
    count: int,
    ranks: list[int],
    lo: float,
    hi: float,
    n_bins: int = _N_BINS,
    cap: int = _CAP,
) -> list[float]:
    """The values of 0-based ``ranks`` (ascending order) among ``count`` streamed values.

    Args:
        stream: called once per pass; yields 1-D float tensors, the same values each time.
        count: total number of values the stream yields.
        ranks: wanted 0-based ranks, each in [0, count).
        lo, hi: a range expected to hold most values (values outside are clamped into the end
            bins: correctness never depends on it, only the number of passes).
    """
    assert count > 0 and all(0 <= r < count for r in ranks), (count, ranks)
    levels: list[_Level] = []
    below = 0  # values in bins before the kept ones, over all levels
    n_candidates = count
    for _ in range(_MAX_LEVELS):
        if n_candidates <= cap:
            break
        width = hi - lo
        if not width > 0:
            break
        level0 = _Level(lo, n_bins / width, n_bins, 0, n_bins - 1)
        counts = None
        vmin, vmax = float("inf"), float("-inf")
        for v in stream():
            v = _restrict(v, levels)
            if v.numel() == 0:
                continue
            vmin, vmax = min(vmin, float(v.min())), max(vmax, float(v.max()))
            c = torch.bincount(level0.bins(v), minlength=n_bins)
            counts = c if counts is None else counts + c
        assert counts is not None
        if vmin == vmax:  # every candidate has the same value
            return [vmin] * len(ranks)
        cum = torch.cumsum(counts, 0).cpu()
        local = [r - below for r in ranks]
        b_lo = int(torch.searchsorted(cum, torch.tensor(min(local)), right=True))
        b_hi = int(torch.searchsorted(cum, torch.tensor(max(local)), right=True))
        if b_lo > 0:
            below += int(cum[b_lo - 1])
        n_candidates = int(cum[b_hi]) - (int(cum[b_lo - 1]) if b_lo > 0 else 0)
        levels.append(_Level(lo, n_bins / width, n_bins, b_lo, b_hi))
        lo, hi = lo + b_lo / level0.scale, lo + (b_hi + 1) / level0.scale
    parts = [_restrict(v, levels) for v in stream()]
    cand = torch.sort(torch.cat([p.to(torch.float64) for p in parts])).values
    assert cand.numel() == n_candidates, (cand.numel(), n_candidates)
    return [float(cand[r - below]) for r in ranks]


def exact_median(
    stream: Callable[[], Iterable[torch.Tensor]], count: int, lo: float, hi: float, **kw
) -> float:
    """Median of ``count`` streamed values (numpy convention: mean of the two middle values
    when ``count`` is even). See :func:`exact_kth_values`."""
    if count % 2:
        return exact_kth_values(stream, count, [count // 2], lo, hi, **kw)[0]
    a, b = exact_kth_values(stream, count, [count // 2 - 1, count // 2], lo, hi, **kw)
    return 0.5 * (a + b)
