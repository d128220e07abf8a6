"""Row-wise sorting of int64 keys using every CPU thread (numpy's SIMD sort releases the GIL),
or torch on a GPU."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch

__all__ = ["sort_rows"]


def sort_rows(keys: torch.Tensor, n_threads: int | None = None) -> torch.Tensor:
    """Sort each row of ``keys`` [B, M] (int64) ascending; returns a new tensor [B, M]."""
    if keys.device.type != "cpu":
        return torch.sort(keys, dim=1).values
    arr = keys.numpy()
    n_threads = max(1, min(n_threads or torch.get_num_threads(), arr.shape[0]))
    if n_threads == 1:
        return torch.from_numpy(np.sort(arr, axis=1))
    out = np.empty_like(arr)
    bounds = np.linspace(0, arr.shape[0], n_threads + 1).astype(int)

    def work(i: int) -> None:
        a, b = bounds[i], bounds[i + 1]
        out[a:b] = np.sort(arr[a:b], axis=1)

    with ThreadPoolExecutor(n_threads) as ex:
        list(ex.map(work, range(n_threads)))
    return torch.from_numpy(out)
