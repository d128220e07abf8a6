"""Seeded train/validation split and the world-size-independent data order of each epoch."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mummi_ml.metric.errors import MetricError

__all__ = ["Split", "split_indices", "epoch_order"]


@dataclass(frozen=True)
class Split:
    """Indices (into the dataset, sorted) of the training and validation patches."""

    train: np.ndarray
    val: np.ndarray


def split_indices(
    n: int, replica: np.ndarray | None, fraction: float, by: str, seed: int
) -> Split:
    """Hold out ``fraction`` of the patches (``by="patch"``) or of the replicas (``"replica"``).

    Args:
        n: number of patches.
        replica: int ``[n]`` replica id of each patch (needed for ``by="replica"``).
        fraction: held-out fraction, 0 < fraction < 1.
        by: ``patch`` or ``replica``.
        seed: the run's seed (same seed, same split).

    Returns:
        A :class:`Split` with at least one patch on each side.
    """
    if not 0 < fraction < 1:
        raise MetricError(f"validation_fraction: expected 0 < f < 1, got {fraction}")
    rng = np.random.default_rng([seed, 0x5B117])
    if by == "patch":
        n_val = int(round(fraction * n))
        if n_val < 1 or n_val >= n:
            raise MetricError(
                f"data: {n} patches cannot be split {1 - fraction:.0%}/{fraction:.0%} "
                "(need at least one patch on each side)"
            )
        is_val = np.zeros(n, dtype=bool)
        is_val[rng.permutation(n)[:n_val]] = True
    elif by == "replica":
        if replica is None or len(replica) != n:
            raise MetricError("split_by=replica: every patch needs a replica id")
        reps = np.unique(replica)
        n_val = int(round(fraction * len(reps)))
        if n_val < 1 or n_val >= len(reps):
            raise MetricError(
                f"split_by=replica: {len(reps)} replica(s) cannot be split with validation "
                f"fraction {fraction} (need at least one replica on each side)"
            )
        is_val = np.isin(replica, rng.permutation(reps)[:n_val])
    else:
        raise MetricError(f"split_by: expected 'patch' or 'replica', got {by!r}")
    return Split(train=np.flatnonzero(~is_val), val=np.flatnonzero(is_val))


def epoch_order(n: int, epoch: int, seed: int, shuffle: str, block: int, window: int) -> np.ndarray:
    """Order in which the ``n`` training patches are visited in ``epoch`` (positions 0..n-1).

    The order depends only on (seed, epoch, shuffle, block, window), never on the number of
    ranks, so that any number of ranks sees the same global batches.

    - ``full``: a permutation of all n.
    - ``block``: blocks of ``block`` consecutive patches in a random order; patches are then
      shuffled within consecutive windows of ``window`` patches (reads stay mostly sequential).
    """
    rng = np.random.default_rng([seed, 0xE90C, epoch])
    if shuffle == "full":
        return rng.permutation(n)
    if shuffle != "block":
        raise MetricError(f"shuffle: expected 'full' or 'block', got {shuffle!r}")
    starts = np.arange(0, n, block)
    order = np.concatenate([np.arange(s, min(s + block, n)) for s in rng.permutation(starts)])
    for lo in range(0, n, window):
        seg = order[lo : lo + window]
        order[lo : lo + window] = seg[rng.permutation(len(seg))]
    return order
