"""The transformations a similarity metric must be invariant to: axis-aligned rotations and
reflections of a patch (the coordinate system of the simulation is arbitrary).

Each non-identity element of the dihedral group D4 is written as ``(k, flip)``: first reverse the
columns if ``flip``, then rotate by ``k`` quarter turns (``rot90`` over the (rows, cols) axes). The
same table drives the numpy version here and the torch version in ``mummi_ml.metric``.
"""

from __future__ import annotations

import numpy as np

__all__ = ["TRANSFORM_SPECS", "TRANSFORM_GROUPS", "apply_transform", "apply_transforms"]

TRANSFORM_SPECS: dict[str, tuple[int, bool]] = {
    "rot90": (1, False),
    "rot180": (2, False),
    "rot270": (3, False),
    "flip_h": (0, True),  # mirror left-right: reverse the columns
    "flip_v": (2, True),  # mirror top-bottom: reverse the rows
    "transpose": (1, True),  # reflect across the main diagonal: x[i, j] -> x[j, i]
    "antitranspose": (3, True),  # reflect across the anti-diagonal
}
"""Name -> (quarter turns k, reverse columns first)."""

TRANSFORM_GROUPS: dict[str, tuple[str, ...]] = {
    "paper": ("rot90", "rot180", "rot270", "flip_h", "flip_v"),
    "dihedral": ("rot90", "rot180", "rot270", "flip_h", "flip_v", "transpose", "antitranspose"),
}
"""The paper's five transformations, and the full dihedral group's seven non-identity elements."""


def apply_transform(x: np.ndarray, name: str) -> np.ndarray:
    """One transformation of a batch ``x [N, rows, cols, C]`` (returns a view when possible)."""
    if name not in TRANSFORM_SPECS:
        raise ValueError(f"unknown transform {name!r}; valid: {', '.join(TRANSFORM_SPECS)}")
    k, flip = TRANSFORM_SPECS[name]
    out = x[:, :, ::-1] if flip else x
    return np.rot90(out, k, axes=(1, 2))


def apply_transforms(x: np.ndarray, group: str = "paper") -> np.ndarray:
    """Every non-identity transformation of every patch.

    Args:
        x: ``[N, rows, cols, C]`` with rows == cols.
        group: ``"paper"`` (5 elements) or ``"dihedral"`` (7).

    Returns:
        ``[N, T, rows, cols, C]`` (T = 5 or 7), in the order of ``TRANSFORM_GROUPS[group]``.
    """
    if group not in TRANSFORM_GROUPS:
        raise ValueError(f"group: expected one of {list(TRANSFORM_GROUPS)}, got {group!r}")
    x = np.asarray(x)
    if x.ndim != 4 or x.shape[1] != x.shape[2]:
        raise ValueError(f"x: expected [N, rows, cols, C] with rows == cols, got {list(x.shape)}")
    return np.stack([apply_transform(x, name) for name in TRANSFORM_GROUPS[group]], axis=1)
