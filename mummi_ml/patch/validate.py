"""Validation of patch batches: shape, dtype, finite and physical values, consistent counts.

One set of rules, shared by every reader and writer that validates (the patch writer, the
selector's ingest, training):

- ``x`` is floating ``[N, 37, 37, 14]`` and every value is finite;
- every concentration lies in ``[-NEGATIVE_CONCENTRATION_TOLERANCE, MAX_CONCENTRATION]``
  (lipids per pixel of one leaflet; the bound is derived from the schema's unit and the densest
  packing of lipid chains, see :mod:`mummi_ml.patch.constants`);
- ``y`` is integer ``[N, 2]`` with ``MAX_PROTEINS_PER_PATCH >= n_ras >= n_raf >= 0``.

Three entry points: :func:`check_patches` classifies every patch (a :class:`PatchCheck` with a
problem code per patch, for services that quarantine with a reason code), :func:`find_invalid`
reports every bad patch with its reason, :func:`validate_batch` raises on the first problem.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mummi_ml.errors import PatchValidationError
from mummi_ml.patch.constants import (
    MAX_CONCENTRATION,
    MAX_PROTEINS_PER_PATCH,
    NEGATIVE_CONCENTRATION_TOLERANCE,
    PATCH_SHAPE,
)

__all__ = [
    "validate_batch",
    "find_invalid",
    "check_patches",
    "PatchCheck",
    "PROBLEMS",
    "NONFINITE",
    "NEGATIVE_CONCENTRATION",
    "EXCESS_CONCENTRATION",
    "NEGATIVE_COUNT",
    "RAF_EXCEEDS_RAS",
    "TOO_MANY_PROTEINS",
]

OK, NONFINITE, NEGATIVE_CONCENTRATION, EXCESS_CONCENTRATION = 0, 1, 2, 3
NEGATIVE_COUNT, RAF_EXCEEDS_RAS, TOO_MANY_PROTEINS = 4, 5, 6
PROBLEMS: dict[int, str] = {
    NONFINITE: "non-finite concentration",
    NEGATIVE_CONCENTRATION: "negative concentration",
    EXCESS_CONCENTRATION: "concentration above the physical bound",
    NEGATIVE_COUNT: "negative protein count",
    RAF_EXCEEDS_RAS: "n_raf > n_ras",
    TOO_MANY_PROTEINS: "more proteins than fit in a patch",
}
"""Problem code -> short name (code 0: the patch is valid). A patch with several problems gets
the first in this order."""


@dataclass(frozen=True)
class PatchCheck:
    """The verdict on every patch of a batch.

    Attributes:
        problem: int8 ``[N]`` problem code per patch (0 = valid; see :data:`PROBLEMS`).
        reasons: one human-readable reason per bad patch, in patch order, each starting with
            ``"patch i: "`` (i = index in the batch).
    """

    problem: np.ndarray
    reasons: list[str]

    @property
    def bad(self) -> np.ndarray:
        """bool ``[N]``: the patch breaks a rule."""
        return self.problem != OK


def _check_shapes(x: np.ndarray, y: np.ndarray) -> None:
    if not isinstance(x, np.ndarray) or not isinstance(y, np.ndarray):
        raise PatchValidationError(
            f"x, y: expected numpy arrays, got {type(x).__name__} and {type(y).__name__}"
        )
    if x.ndim != 4 or x.shape[1:] != PATCH_SHAPE:
        raise PatchValidationError(
            f"x: expected shape [N, {', '.join(map(str, PATCH_SHAPE))}], got {list(x.shape)}"
        )
    if x.dtype.kind != "f":
        raise PatchValidationError(f"x: expected a floating-point dtype, got {x.dtype}")
    if y.shape != (len(x), 2):
        raise PatchValidationError(
            f"y: expected shape [{len(x)}, 2] (n_ras, n_raf), got {list(y.shape)}"
        )
    if y.dtype.kind not in "iu":
        raise PatchValidationError(f"y: expected an integer dtype, got {y.dtype}")


def _reason(i: int, code: int, x: np.ndarray, y: np.ndarray) -> str:
    if code == NONFINITE:
        n_bad = int((~np.isfinite(x)).sum())
        return f"patch {i}: x has {n_bad} non-finite values (NaN or inf)"
    if code == NEGATIVE_CONCENTRATION:
        return (f"patch {i}: negative concentration (min {float(x.min()):.4g} < "
                f"-{NEGATIVE_CONCENTRATION_TOLERANCE:g} lipids per pixel)")
    if code == EXCESS_CONCENTRATION:
        return (f"patch {i}: concentration above the physical bound (max {float(x.max()):.4g} > "
                f"{MAX_CONCENTRATION:.4g} lipids per pixel of a leaflet)")
    if code == NEGATIVE_COUNT:
        return f"patch {i}: negative protein count y = {y.tolist()}"
    if code == RAF_EXCEEDS_RAS:
        return f"patch {i}: n_raf > n_ras in y = {y.tolist()}"
    return (f"patch {i}: more proteins than fit in a patch in y = {y.tolist()} "
            f"(at most {MAX_PROTEINS_PER_PATCH})")


def check_patches(x: np.ndarray, y: np.ndarray) -> PatchCheck:
    """Classify every patch of a batch whose array shapes are right.

    Args:
        x: ``[N, 37, 37, 14]`` floating point (lipids per pixel of one leaflet).
        y: ``[N, 2]`` integer (n_ras, n_raf).

    Returns:
        A :class:`PatchCheck` (problem code per patch, reasons of the bad ones).

    Raises:
        PatchValidationError: the arrays themselves have the wrong shape or dtype (then no patch
            of the batch can be trusted).
    """
    _check_shapes(x, y)
    n = len(x)
    problem = np.zeros(n, dtype=np.int8)
    if n == 0:
        return PatchCheck(problem, [])
    with np.errstate(invalid="ignore"):
        lo = x.min(axis=(1, 2, 3))  # NaN propagates: NaN patches fail both comparisons
        hi = x.max(axis=(1, 2, 3))
    nonfinite = ~(np.isfinite(lo) & np.isfinite(hi))
    y64 = y.astype(np.int64)
    rules = [
        (NONFINITE, nonfinite),
        (NEGATIVE_CONCENTRATION, ~nonfinite & (lo < -NEGATIVE_CONCENTRATION_TOLERANCE)),
        (EXCESS_CONCENTRATION, ~nonfinite & (hi > MAX_CONCENTRATION)),
        (NEGATIVE_COUNT, (y64 < 0).any(axis=1)),
        (RAF_EXCEEDS_RAS, y64[:, 1] > y64[:, 0]),
        (TOO_MANY_PROTEINS, y64[:, 0] > MAX_PROTEINS_PER_PATCH),
    ]
    for code, mask in reversed(rules):  # the first rule in order wins
        problem[mask] = code
    reasons = [_reason(int(i), int(problem[i]), x[i], y[i]) for i in np.flatnonzero(problem)]
    return PatchCheck(problem, reasons)


def find_invalid(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """Find every bad patch in a batch whose array shapes are right.

    Args:
        x: ``[N, 37, 37, 14]`` floating point.
        y: ``[N, 2]`` integer (n_ras, n_raf).

    Returns:
        ``(bad, reasons)``: bool ``[N]`` mask, and one reason string per bad patch (in order).

    Raises:
        PatchValidationError: the arrays themselves have the wrong shape or dtype.
    """
    check = check_patches(x, y)
    return check.bad, check.reasons


def validate_batch(x: np.ndarray, y: np.ndarray) -> None:
    """Raise :class:`PatchValidationError` naming the first bad patch and its problem.

    Checks: x is floating ``[N, 37, 37, 14]`` with finite values in
    ``[-NEGATIVE_CONCENTRATION_TOLERANCE, MAX_CONCENTRATION]``, y is integer ``[N, 2]`` with
    ``MAX_PROTEINS_PER_PATCH >= n_ras >= n_raf >= 0`` for every patch.
    """
    bad, reasons = find_invalid(x, y)
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        more = f" ({int(bad.sum()) - 1} more bad patches)" if bad.sum() > 1 else ""
        raise PatchValidationError(reasons[0] + more, index=first)
