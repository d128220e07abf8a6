"""Configuration of metric evaluation (``evaluate:``)."""

from __future__ import annotations

from pydantic import Field

from mummi_ml.config_loader import StrictModel

__all__ = ["EvaluateConfig"]


class EvaluateConfig(StrictModel):
    """Evaluation; the evaluate sub-package owns and extends this section."""

    n_points: int = Field(30000, ge=2, description="held-out patches evaluated (paper: 30,000)")
    seed: int = Field(0, description="seed of the evaluation subset")
