"""Rotations and reflections of channel-last patches in torch (the table of mummi_ml.patch)."""

from __future__ import annotations

import torch

from mummi_ml.patch import TRANSFORM_GROUPS, TRANSFORM_SPECS

__all__ = ["apply_transform", "transform_views", "n_transforms", "pixel_permutations"]


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


def pixel_permutations(group: str = "paper", size: int = 37) -> torch.Tensor:
    """``[1 + T, size*size]`` int64 table: row t gives, for each pixel of view t (row-major), the
    pixel of the original patch it comes from (row 0 is the identity). ``x.reshape(N, -1, C)[:,
    table]`` then yields all views ``[N, 1 + T, size*size, C]`` in one gather."""
    n_transforms(group)
    idx = torch.arange(size * size).reshape(1, size, size, 1)
    names = TRANSFORM_GROUPS[group]
    rows = [idx.reshape(-1)] + [apply_transform(idx, n).reshape(-1) for n in names]
    return torch.stack(rows).contiguous()
