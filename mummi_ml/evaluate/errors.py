"""The evaluation sub-package's exception."""

from __future__ import annotations

from mummi_ml.errors import MummiMLError

__all__ = ["EvaluationError"]


class EvaluationError(MummiMLError, ValueError):
    """Bad input to an evaluation criterion or report: the message names the argument, the
    expected and the received value."""
