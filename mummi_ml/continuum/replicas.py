"""One replica per MPI rank: detecting the launch, splitting work, naming shard files.

Under ``mpiexec``/``srun``/``jsrun``/``flux run`` with R > 1 ranks, rank r runs replica
``replica_offset + r`` (seed ``seed + replica``) and writes ``NAME.rank<r>.h5`` next to the
requested ``NAME.h5``; with one rank the file is ``NAME.h5`` itself. Read the shards as one
dataset with ``PatchDataset(shard_paths(out, R))`` or ``PatchDataset("NAME.rank*.h5")``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

__all__ = ["launched_under_mpi", "world_comm", "shard_path", "shard_paths", "split_count"]

_LAUNCHER_ENV = (
    "PMI_SIZE",  # MPICH / Hydra, Intel MPI, Slurm PMI2
    "PMIX_RANK",  # PMIx (Open MPI 5, Slurm, Flux)
    "OMPI_COMM_WORLD_SIZE",  # Open MPI
    "MV2_COMM_WORLD_SIZE",  # MVAPICH2
    "JSM_NAMESPACE_SIZE",  # LSF jsrun
    "FLUX_TASK_RANK",  # flux run
)


def launched_under_mpi() -> bool:
    """True when an MPI launcher started this process (judged from its environment)."""
    return any(k in os.environ for k in _LAUNCHER_ENV)


def world_comm() -> Any | None:
    """``MPI.COMM_WORLD`` when launched under MPI with more than one rank, else None (one rank;
    mpi4py is then not even imported)."""
    if not launched_under_mpi():
        return None
    from mpi4py import MPI

    comm = MPI.COMM_WORLD
    return comm if comm.Get_size() > 1 else None


def shard_path(out: str | Path, rank: int, n_ranks: int) -> Path:
    """The file rank ``rank`` of ``n_ranks`` writes for ``out``: ``out`` itself for one rank,
    else ``<stem>.rank<r><suffix>`` (``run/pre.h5`` -> ``run/pre.rank3.h5``)."""
    out = Path(out)
    if n_ranks <= 1:
        return out
    suffix = out.suffix or ".h5"
    return out.with_name(f"{out.stem if out.suffix else out.name}.rank{rank}{suffix}")


def shard_paths(out: str | Path, n_ranks: int) -> list[Path]:
    """Every shard of ``out`` written by ``n_ranks`` ranks, in rank order."""
    return [shard_path(out, r, n_ranks) for r in range(n_ranks)]


def split_count(total: int, rank: int, n_ranks: int) -> int:
    """Share of ``total`` items for ``rank`` (the first ``total % n_ranks`` ranks get one more)."""
    return total // n_ranks + (1 if rank < total % n_ranks else 0)
