"""Errors of the selector sub-package."""

from __future__ import annotations

from mummi_ml.errors import MummiMLError

__all__ = ["SelectorError", "CheckpointError"]


class SelectorError(MummiMLError):
    """The selector cannot proceed: bad argument, inconsistent state or missing component."""


class CheckpointError(SelectorError):
    """A selector checkpoint is missing, incomplete or incompatible with the running config."""
