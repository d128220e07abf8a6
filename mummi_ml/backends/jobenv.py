"""The environment a job starts with: the service's, less its own place in an MPI job.

A service that runs as one rank of an MPI program (``mpiexec -n 4 mummi-ml select``, ``srun``,
``flux run``) carries the variables by which its launcher told it its rank: ``PMI_RANK=0``,
``PMI_SIZE=4``, ``PMI_FD`` (a descriptor the job does not have) and the like. A job inheriting them
would take itself for rank 0 of the service's program: its ``MPI_Init`` fails on the dead PMI
descriptor, and :func:`mummi_ml.parallel.detect_launch` reports the service's size. Every backend
therefore starts jobs without them; the launcher of the job (``mpiexec``, ``srun``, the Flux
shell) sets the job's own. Standard library only (the local runner imports it).
"""

from __future__ import annotations

import os
from collections.abc import Mapping

__all__ = ["LAUNCH_VARIABLE_PREFIXES", "LAUNCH_VARIABLES", "job_environment"]

#: prefixes of the variables of a process's place in an MPI job (PMI-1/2 and PMIx clients,
#: Open MPI's rank, jsrun's namespace, MPICH Hydra's control descriptor)
LAUNCH_VARIABLE_PREFIXES: tuple[str, ...] = (
    "PMI_", "PMIX_", "OMPI_COMM_WORLD_", "JSM_NAMESPACE_", "HYDI_",
)  # fmt: skip

#: single variables of the same kind (MPICH Hydra's local rank, a Slurm or Flux task's rank; the
#: allocation's own variables, e.g. SLURM_JOB_ID or FLUX_URI, are kept)
LAUNCH_VARIABLES: frozenset[str] = frozenset({
    "MPI_LOCALRANKID", "MPI_LOCALNRANKS", "OMPI_UNIVERSE_SIZE", "SLURM_PROCID",
    "SLURM_LOCALID", "FLUX_TASK_RANK", "FLUX_TASK_LOCAL_ID",
})  # fmt: skip


def job_environment(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """``env`` (default ``os.environ``) without the launch variables of the calling process."""
    env = os.environ if env is None else env
    return {k: v for k, v in env.items()
            if k not in LAUNCH_VARIABLES and not k.startswith(LAUNCH_VARIABLE_PREFIXES)}
