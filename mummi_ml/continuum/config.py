"""Configuration of the synthetic continuum membrane model (``continuum:``)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from mummi_ml.config_loader import StrictModel

__all__ = ["ContinuumConfig"]


class ContinuumConfig(StrictModel):
    """The synthetic continuum model; the continuum sub-package owns and extends this section."""

    preset: Literal["pre-campaign", "campaign"] = Field(
        "pre-campaign", description="parameter preset; 'campaign' drifts over simulated time"
    )
    seed: int = Field(0, description="base seed; each replica (rank) adds its replica id")
