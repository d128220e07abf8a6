"""The paper's piecewise-constant learning rate: one value per range of epochs."""

from __future__ import annotations

import bisect
from collections.abc import Sequence

__all__ = ["learning_rate_at"]


def learning_rate_at(
    epoch: int, learning_rates: Sequence[float], boundaries: Sequence[int]
) -> float:
    """Learning rate of (0-based) ``epoch``: ``learning_rates[k]`` where k boundaries are <= epoch.

    With the paper's ``[1e-3, 5e-3, 1e-4, 1e-5]`` and ``[10, 20, 30]``: epochs 0-9 use 1e-3,
    10-19 use 5e-3, 20-29 use 1e-4, and 30 on use 1e-5 ("switched after 10, 20 and 30 epochs").
    """
    if len(learning_rates) != len(boundaries) + 1:
        raise ValueError(
            f"learning_rates needs one more value than boundaries, got {len(learning_rates)} "
            f"and {len(boundaries)}"
        )
    if epoch < 0:
        raise ValueError(f"epoch: expected >= 0, got {epoch}")
    return float(learning_rates[bisect.bisect_right(list(boundaries), epoch)])
