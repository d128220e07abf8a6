"""Configuration of the in situ selector (``selector:``)."""

from __future__ import annotations

from pydantic import Field

from mummi_ml.config_loader import StrictModel

__all__ = ["SelectorConfig"]


class SelectorConfig(StrictModel):
    """The selector; the selector sub-package owns and extends this section."""

    capacity_per_rank: int = Field(35000, ge=1, description="candidates kept per rank")
