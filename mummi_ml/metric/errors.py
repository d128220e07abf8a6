"""Errors of the metric part."""

from __future__ import annotations

from mummi_ml.errors import MummiMLError

__all__ = ["MetricError", "TrainingInterrupted"]


class MetricError(MummiMLError, ValueError):
    """Bad training data, configuration, checkpoint or model directory (message names which)."""


class TrainingInterrupted(MummiMLError):
    """Training stopped on SIGTERM/SIGUSR1 after writing a checkpoint; resume to continue.

    Attributes:
        checkpoint: path of the checkpoint that was written.
        epoch: epoch in progress (0-based).
        step: next step of that epoch.
    """

    def __init__(self, message: str, checkpoint, epoch: int, step: int):
        super().__init__(message)
        self.checkpoint = checkpoint
        self.epoch = epoch
        self.step = step
