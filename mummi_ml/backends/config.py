"""Configuration of MD job emission (``jobs:``)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from mummi_ml.config_loader import StrictModel

__all__ = ["JobsConfig"]


class JobsConfig(StrictModel):
    """MD job backend; the backends sub-package owns and extends this section."""

    backend: Literal["local", "slurm", "flux"] = Field("local", description="job backend")
    slots: int = Field(2, ge=1, description="MD jobs running at once")
