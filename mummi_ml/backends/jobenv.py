"""The environment a job starts with: the service's, less its own place in an MPI job.

A service that runs as one rank of an MPI program (``mpiexec -n 4 mummi-ml select``, ``srun``,
``flux run``) carries the variables by which its launcher told it its rank: ``PMI_RANK=0``,
``PMI_SIZE=4``, ``PMI_FD`` (a descriptor the job does not have) and the like. A job inheriting them
would take itself for rank 0 of the service's program: its ``MPI_Init`` fails on the dead PMI
descriptor, and :func:`mummi_ml.parallel.detect_launch` reports the service's size. Every backend
therefore starts jobs without them; the launcher of the job (``mpiexec``, ``srun``, the Flux
shell) sets the job's own.

Only the variables of one process's place are removed (:data:`LAUNCH_VARIABLES`,
:data:`LAUNCH_VARIABLE_PREFIXES`), not whole families: a site's settings that share a prefix with
them, e.g. ``PMIX_MCA_gds=hash``, ``OMPI_MCA_btl=^openib`` or Cray PMI's ``PMI_NO_FORK`` and
``PMI_MMAP_SYNC_WAIT_TIME``, reach every job unchanged.

Two further rules for two backends: a ``slurm`` job gets no ``SLURM_*``/``SRUN_*`` of the
service's own allocation or step (:func:`sbatch_environment`; Slurm sets the job's from its own
allocation), and the ``mpiexec`` of a ``local`` job of several tasks starts its ranks on this
machine (:data:`LOCAL_MPIEXEC_SETTINGS`). Standard library only (the local runner imports it).
"""

from __future__ import annotations

import os
from collections.abc import Mapping

__all__ = [
    "LAUNCH_VARIABLES",
    "LAUNCH_VARIABLE_PREFIXES",
    "LOCAL_MPIEXEC_SETTINGS",
    "SBATCH_KEPT_VARIABLES",
    "job_environment",
    "sbatch_environment",
]

#: the variables of a process's place in an MPI job, as its launcher sets them. PMI-1/2 clients
#: (MPICH Hydra: PMI_RANK, PMI_SIZE, PMI_FD, PMI_HOSTNAME, and PMI_PORT, PMI_ID or PMI_SPAWNED
#: in other modes; Slurm's ``--mpi=pmi2``: PMI_FD, PMI_JOBID, PMI_RANK, PMI_SIZE; the Flux shell:
#: PMI_FD, PMI_RANK, PMI_SIZE; Cray PMI: PMI_LOCAL_RANK, PMI_LOCAL_SIZE), PMIx clients (what
#: ``PMIx_server_setup_fork`` sets for its client: namespace, rank, the server's URI under
#: ``PMIX_SERVER_*``, its modules and store), Open MPI's rank and daemon, MPICH Hydra's
#: local rank, a Slurm or Flux task's rank. Kept: the allocation's own variables (SLURM_JOB_ID,
#: FLUX_URI; but see :func:`sbatch_environment`) and every setting of a prefix family
#: (PMIX_MCA_*, OMPI_MCA_* but the two below, Cray's PMI_NO_FORK, PMI_MMAP_SYNC_WAIT_TIME, ...)
LAUNCH_VARIABLES: frozenset[str] = frozenset({
    # PMI-1 / PMI-2
    "PMI_RANK", "PMI_SIZE", "PMI_FD", "PMI_PORT", "PMI_ID", "PMI_JOBID", "PMI_APPNUM",
    "PMI_LOCAL_RANK", "PMI_LOCAL_SIZE", "PMI_HOSTNAME", "PMI_SPAWNED",
    # PMIx (a client's identity and its server's connection; PMIX_SERVER_* are prefixes below)
    "PMIX_RANK", "PMIX_NAMESPACE", "PMIX_HOSTNAME", "PMIX_VERSION", "PMIX_SECURITY_MODE",
    "PMIX_BFROP_BUFFER_TYPE", "PMIX_GDS_MODULE", "PMIX_PTL_MODULE",
    # Open MPI
    "OMPI_UNIVERSE_SIZE", "OMPI_MCA_orte_hnp_uri",
    # MPICH Hydra, Slurm, Flux
    "MPI_LOCALRANKID", "MPI_LOCALNRANKS", "SLURM_PROCID", "SLURM_LOCALID", "FLUX_TASK_RANK",
    "FLUX_TASK_LOCAL_ID",
})  # fmt: skip

#: prefixes of families of such variables, all set per process: PMIx's server connection
#: (PMIX_SERVER_URI*, PMIX_SERVER_TMPDIR, ...) and store paths, Open MPI's world rank/size and
#: its ``ess`` job id/vpid, jsrun's namespace, MPICH Hydra's control descriptor
LAUNCH_VARIABLE_PREFIXES: tuple[str, ...] = (
    "PMIX_SERVER_", "PMIX_DSTORE_", "OMPI_COMM_WORLD_", "OMPI_MCA_ess_base_",
    "JSM_NAMESPACE_", "HYDI_",
)  # fmt: skip

#: the Slurm variables a ``slurm`` job is given by its submitter: where the controller is. All
#: other ``SLURM_*``/``SRUN_*`` of the submitter (its job's and step's: SLURM_NTASKS,
#: SLURM_MEM_PER_CPU, SLURM_CPU_BIND, SLURM_DISTRIBUTION, ...) would be read as options by the
#: job's own ``srun``; Slurm sets the job's from its allocation
SBATCH_KEPT_VARIABLES: frozenset[str] = frozenset({"SLURM_CONF", "SLURM_CLUSTERS"})

#: the environment of the ``mpiexec`` of a ``local`` job of several tasks: MPICH Hydra starts its
#: proxy by fork on this machine (``HYDRA_LAUNCHER=fork``) and takes the hosts from the user, i.e.
#: this one (``HYDRA_RMK=user``), instead of from a resource manager it detects: in a Slurm step it
#: would otherwise run ``srun ... hydra_pmi_proxy``, a step that waits for ever for the CPUs the
#: service's step holds. Other ``mpiexec``s ignore them.
LOCAL_MPIEXEC_SETTINGS: Mapping[str, str] = {"HYDRA_LAUNCHER": "fork", "HYDRA_RMK": "user"}


def job_environment(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """``env`` (default ``os.environ``) without the launch variables of the calling process."""
    env = os.environ if env is None else env
    return {k: v for k, v in env.items()
            if k not in LAUNCH_VARIABLES and not k.startswith(LAUNCH_VARIABLE_PREFIXES)}


def sbatch_environment(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment ``sbatch`` is run with (and exports to the job): :func:`job_environment`
    of ``env`` (default ``os.environ``) without ``SLURM_*`` and ``SRUN_*`` but
    :data:`SBATCH_KEPT_VARIABLES`."""
    return {k: v for k, v in job_environment(env).items()
            if k in SBATCH_KEPT_VARIABLES or not k.startswith(("SLURM_", "SRUN_"))}
