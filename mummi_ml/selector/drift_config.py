"""``selector.drift``: window and thresholds of the drift monitor (:mod:`mummi_ml.selector.drift`).

A module of its own so that loading a config does not import numpy-heavy code."""

from __future__ import annotations

from pydantic import Field

from mummi_ml.config_loader import StrictModel

__all__ = ["DriftConfig"]


class DriftConfig(StrictModel):
    """``selector.drift``: the drift monitor's window and thresholds (dimensionless)."""

    enabled: bool = Field(True, description="monitor drift (needs a model whose "
                          "embedding_domain.json has the drift reference)")
    window: int = Field(5000, ge=1, description="arrivals per window (global, all ranks)")
    max_far_fraction: float = Field(
        0.25, gt=0, le=1, description="event when more than this fraction of a window lies "
        "beyond the training 95th percentile of nearest-reference distance (~0.05 in "
        "distribution)")
    max_median_ratio: float = Field(
        2.0, gt=0, description="event when the window's median nearest-reference distance "
        "exceeds this multiple of the training median")
    max_class_shift: float = Field(
        0.5, gt=0, le=1, description="event when the total variation distance between the "
        "window's class shares and the training shares exceeds this")
    max_invariance_ratio: float = Field(
        2.0, gt=0, description="event when max d(x, rho(x)) over the probe sample exceeds this "
        "multiple of the model's training tau")
    probe_size: int = Field(16, ge=0, description="arrivals per window whose transformations "
                            "are embedded for the invariance probe (0: no probe)")
    patience: int = Field(1, ge=1, description="consecutive windows above a threshold before "
                          "the event")
