"""Training checkpoints: everything needed to continue a run exactly where it stopped.

One file, ``checkpoint.pt`` in the run directory, written by rank 0 to a temporary file and
``os.replace``d (a crash never leaves a half-written checkpoint). It holds only tensors, numbers,
strings, lists and dicts, so it loads with ``torch.load(weights_only=True)`` (no unpickling of
arbitrary objects). Contents: encoder weights and buffers, Adam state, epoch and next step, torch
RNG state, the run's configuration (JSON) and data fingerprint, the log rows so far. The data
order is a function of (seed, epoch), so (epoch, step) restores it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from mummi_ml.durable import atomic_path
from mummi_ml.metric.errors import MetricError

__all__ = ["CHECKPOINT_NAME", "CHECKPOINT_FORMAT", "save_checkpoint", "load_checkpoint"]

CHECKPOINT_NAME = "checkpoint.pt"
CHECKPOINT_FORMAT = 1


def save_checkpoint(path: Path, state: dict[str, Any]) -> Path:
    """Write ``state`` (plus the format number) atomically to ``path``."""
    path = Path(path)
    with atomic_path(path, fsync=True) as tmp:
        torch.save({"format": CHECKPOINT_FORMAT, **state}, tmp)
    return path


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint` (weights_only: no pickle).

    Raises:
        MetricError: missing, unreadable, or of another format.
    """
    path = Path(path)
    if not path.is_file():
        raise MetricError(f"{path}: no checkpoint")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch raises many types for a corrupt file
        raise MetricError(f"{path}: unreadable checkpoint ({type(exc).__name__}: {exc})") from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        got = state.get("format") if isinstance(state, dict) else type(state).__name__
        raise MetricError(f"{path}: checkpoint format {got!r}, expected {CHECKPOINT_FORMAT}")
    return state
