"""Small pickle-free collectives over numpy buffers; ``comm=None`` means one rank."""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["rank_size", "allgather_rows", "allreduce_sum", "allreduce_max", "bcast_int",
           "bcast_obj", "barrier"]


def rank_size(comm: Any) -> tuple[int, int]:
    """``(rank, size)`` of a communicator; ``(0, 1)`` for None."""
    return (0, 1) if comm is None else (comm.Get_rank(), comm.Get_size())


def allgather_rows(comm: Any, arr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Concatenate every rank's rows (in rank order) on every rank.

    Args:
        arr: ``[p, ...]`` numeric array; p may differ per rank, trailing shape and dtype may not.

    Returns:
        ``(rows [sum p, ...], counts int64 [size])``.
    """
    arr = np.ascontiguousarray(arr)
    if comm is None:
        return arr.copy(), np.array([len(arr)], dtype=np.int64)
    counts = np.zeros(comm.Get_size(), dtype=np.int64)
    comm.Allgather(np.array([len(arr)], dtype=np.int64), counts)
    row = int(np.prod(arr.shape[1:], dtype=np.int64))
    out = np.empty((int(counts.sum()), *arr.shape[1:]), dtype=arr.dtype)
    from mpi4py.util.dtlib import from_numpy_dtype

    mpitype = from_numpy_dtype(arr.dtype)
    comm.Allgatherv(arr.reshape(-1), [out.reshape(-1), counts * row, None, mpitype])
    return out, counts


def allreduce_sum(comm: Any, arr: np.ndarray) -> np.ndarray:
    """Element-wise sum over ranks (a copy for one rank)."""
    arr = np.ascontiguousarray(arr)
    if comm is None:
        return arr.copy()
    from mpi4py import MPI

    out = np.empty_like(arr)
    comm.Allreduce(arr, out, op=MPI.SUM)
    return out


def allreduce_max(comm: Any, arr: np.ndarray) -> np.ndarray:
    """Element-wise maximum over ranks."""
    arr = np.ascontiguousarray(arr)
    if comm is None:
        return arr.copy()
    from mpi4py import MPI

    out = np.empty_like(arr)
    comm.Allreduce(arr, out, op=MPI.MAX)
    return out


def bcast_int(comm: Any, value: int, root: int = 0) -> int:
    """Broadcast one integer from ``root``."""
    if comm is None:
        return int(value)
    buf = np.array([value], dtype=np.int64)
    comm.Bcast(buf, root=root)
    return int(buf[0])


def bcast_obj(comm: Any, value: Any, root: int = 0) -> Any:
    """Broadcast a small picklable object (a path, a short record) from ``root``."""
    return value if comm is None else comm.bcast(value, root=root)


def barrier(comm: Any) -> None:
    if comm is not None:
        comm.Barrier()
