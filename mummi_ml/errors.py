"""Exceptions of the package. Every error the package raises on purpose derives from
:class:`MummiMLError`, so a caller (or the CLI) can tell a reported problem from a bug."""

from __future__ import annotations

__all__ = [
    "MummiMLError",
    "ConfigError",
    "PatchValidationError",
    "PatchFileError",
]


class MummiMLError(Exception):
    """Base class of all errors raised on purpose by mummi-ml."""


class ConfigError(MummiMLError, ValueError):
    """A configuration file or override is invalid; the message names the file and the key."""


class PatchValidationError(MummiMLError, ValueError):
    """A batch of patches is malformed; the message names the patch index and the problem.

    Attributes:
        index: index of the first offending patch in the batch, or None for batch-level problems.
    """

    def __init__(self, message: str, index: int | None = None):
        super().__init__(message)
        self.index = index


class PatchFileError(MummiMLError, OSError):
    """A patch file cannot be read or written: missing, truncated, foreign or newer schema."""
