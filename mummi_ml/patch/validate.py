"""Validation of patch batches: shape, dtype, finite values, consistent protein counts.

Two entry points: :func:`validate_batch` raises on the first problem (for writers and training),
:func:`find_invalid` reports every bad patch with its reason (for services that quarantine).
"""

from __future__ import annotations

import numpy as np

from mummi_ml.errors import PatchValidationError
from mummi_ml.patch.constants import PATCH_SHAPE

__all__ = ["validate_batch", "find_invalid"]


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


def find_invalid(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """Find every bad patch in a batch whose array shapes are right.

    Args:
        x: ``[N, 37, 37, 14]`` floating point.
        y: ``[N, 2]`` integer (n_ras, n_raf).

    Returns:
        ``(bad, reasons)``: bool ``[N]`` mask, and one reason string per bad patch (in order).

    Raises:
        PatchValidationError: the arrays themselves have the wrong shape or dtype (then no patch
            of the batch can be trusted).
    """
    _check_shapes(x, y)
    nonfinite = ~np.isfinite(x).all(axis=(1, 2, 3))
    negative_counts = (y < 0).any(axis=1)
    raf_gt_ras = y[:, 1] > y[:, 0]
    bad = nonfinite | negative_counts | raf_gt_ras
    reasons = []
    for i in np.flatnonzero(bad):
        if nonfinite[i]:
            n_bad = int((~np.isfinite(x[i])).sum())
            reasons.append(f"patch {i}: x has {n_bad} non-finite values (NaN or inf)")
        elif negative_counts[i]:
            reasons.append(f"patch {i}: negative protein count y = {y[i].tolist()}")
        else:
            reasons.append(f"patch {i}: n_raf > n_ras in y = {y[i].tolist()}")
    return bad, reasons


def validate_batch(x: np.ndarray, y: np.ndarray) -> None:
    """Raise :class:`PatchValidationError` naming the first bad patch and its problem.

    Checks: x is floating ``[N, 37, 37, 14]``, y is integer ``[N, 2]``, every value of x is finite,
    and ``n_ras >= n_raf >= 0`` for every patch.
    """
    bad, reasons = find_invalid(x, y)
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        more = f" ({int(bad.sum()) - 1} more bad patches)" if bad.sum() > 1 else ""
        raise PatchValidationError(reasons[0] + more, index=first)
