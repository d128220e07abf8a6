"""Rotations and reflections of channel-last patches in torch (the table of mummi_ml.patch)."""

from __future__ import annotations

import torch

from mummi_ml.patch import TRANSFORM_GROUPS, TRANSFORM_SPECS

__all__ = ["apply_transform", "transform_views", "n_transforms"]


def n_transforms(group: str) -> int:
    """T, the number of non-identity transformations of ``group`` (5 or 7)."""
    if group not in TRANSFORM_GROUPS:
        raise ValueError(
            f"transform group: expected one of {sorted(TRANSFORM_GROUPS)}, got {group!r}"
        )
    return len(TRANSFORM_GROUPS[group])


def apply_transform(x: torch.Tensor, name: str) -> torch.Tensor:
    """One named transformation of ``x`` ``[N, rows, cols, C]`` (same spec as the numpy one)."""
    k, flip = TRANSFORM_SPECS[name]
    y = torch.flip(x, dims=(2,)) if flip else x
    return torch.rot90(y, k, dims=(1, 2)) if k % 4 else y


def transform_views(x: torch.Tensor, group: str = "paper") -> torch.Tensor:
    """``x`` ``[N, R, R, C]`` -> ``[N, 1 + T, R, R, C]``: the identity then each transformation."""
    n_transforms(group)
    views = [x] + [apply_transform(x, name) for name in TRANSFORM_GROUPS[group]]
    return torch.stack(views, dim=1)
