"""Who am I in a parallel job? Rank, size and local rank from the launcher's environment.

Every HPC launcher exports the place of a process in the job through environment variables, each
under its own names. :func:`detect_launch` reads them, most specific first:

- jsrun (LSF): ``JSM_NAMESPACE_RANK`` / ``_SIZE`` / ``_LOCAL_RANK`` / ``_LOCAL_SIZE``
- mpirun (Open MPI): ``OMPI_COMM_WORLD_RANK`` / ``_SIZE`` / ``_LOCAL_RANK`` / ``_LOCAL_SIZE``
- flux run: ``FLUX_TASK_RANK`` / ``FLUX_JOB_SIZE`` / ``FLUX_TASK_LOCAL_ID`` (``FLUX_JOB_NNODES``)
- srun (Slurm): ``SLURM_PROCID`` / ``SLURM_NTASKS`` / ``SLURM_LOCALID``
  (``SLURM_STEP_TASKS_PER_NODE``)
- mpiexec (MPICH Hydra, PMI-1): ``PMI_RANK`` / ``PMI_SIZE`` / ``MPI_LOCALRANKID`` /
  ``MPI_LOCALNRANKS``
- PMIx: ``PMIX_RANK`` / ``PMIX_SIZE`` (or ``OMPI_COMM_WORLD_SIZE``) / ``PMIX_LOCAL_RANK``

An ``mpiexec`` started inside a Slurm or Flux batch script inherits that script's stale
``SLURM_PROCID=0`` / ``FLUX_TASK_RANK=0``; a launcher's own variables are therefore accepted only
when they agree with the PMI variables of the process manager that started it (when those exist).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from mummi_ml.errors import MummiMLError

__all__ = ["LaunchInfo", "LaunchError", "detect_launch", "LAUNCHERS"]


class LaunchError(MummiMLError, RuntimeError):
    """The launcher environment is inconsistent, or the process group cannot be set up."""


@dataclass(frozen=True)
class LaunchInfo:
    """The place of this process in a parallel job.

    Attributes:
        launcher: which launcher started it: ``jsrun``, ``openmpi``, ``flux``, ``slurm``,
            ``mpich``, ``pmix`` or ``single`` (not launched in parallel).
        rank: global rank, 0 <= rank < size.
        size: number of processes in the job.
        local_rank: rank among the processes of this node (selects the GPU).
        local_size: processes on this node (None when the launcher does not say).
    """

    launcher: str
    rank: int
    size: int
    local_rank: int
    local_size: int | None

    def __post_init__(self) -> None:
        if self.size < 1 or not 0 <= self.rank < self.size:
            raise LaunchError(
                f"{self.launcher}: rank {self.rank} out of range for size {self.size}"
            )
        if self.local_rank < 0:
            raise LaunchError(f"{self.launcher}: negative local rank {self.local_rank}")

    @property
    def is_parallel(self) -> bool:
        """True when more than one process takes part."""
        return self.size > 1


def _int(env: Mapping[str, str], name: str) -> int | None:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return None
    try:
        return int(raw.strip())
    except ValueError:
        raise LaunchError(
            f"environment variable {name}: expected an integer, got {raw!r}"
        ) from None


def _tasks_per_node(raw: str | None) -> int | None:
    """First count of a Slurm tasks-per-node list such as ``"4(x2),3"`` (here 4)."""
    if not raw:
        return None
    m = re.match(r"\s*(\d+)", raw)
    return int(m.group(1)) if m else None


def _jsrun(env: Mapping[str, str]) -> LaunchInfo | None:
    rank, size = _int(env, "JSM_NAMESPACE_RANK"), _int(env, "JSM_NAMESPACE_SIZE")
    if rank is None or size is None:
        return None
    local = _int(env, "JSM_NAMESPACE_LOCAL_RANK")
    if local is None:
        local = _int(env, "OMPI_COMM_WORLD_LOCAL_RANK") or 0
    local_size = _int(env, "JSM_NAMESPACE_LOCAL_SIZE") or _int(env, "OMPI_COMM_WORLD_LOCAL_SIZE")
    return LaunchInfo("jsrun", rank, size, local, local_size)


def _openmpi(env: Mapping[str, str]) -> LaunchInfo | None:
    rank, size = _int(env, "OMPI_COMM_WORLD_RANK"), _int(env, "OMPI_COMM_WORLD_SIZE")
    if rank is None or size is None:
        return None
    local = _int(env, "OMPI_COMM_WORLD_LOCAL_RANK") or 0
    return LaunchInfo("openmpi", rank, size, local, _int(env, "OMPI_COMM_WORLD_LOCAL_SIZE"))


def _flux(env: Mapping[str, str]) -> LaunchInfo | None:
    rank, size = _int(env, "FLUX_TASK_RANK"), _int(env, "FLUX_JOB_SIZE")
    if rank is None or size is None:
        return None
    local = _int(env, "FLUX_TASK_LOCAL_ID") or 0
    nnodes = _int(env, "FLUX_JOB_NNODES")
    local_size = size // nnodes if nnodes and size % nnodes == 0 else None
    return LaunchInfo("flux", rank, size, local, local_size)


def _slurm(env: Mapping[str, str]) -> LaunchInfo | None:
    rank, size = _int(env, "SLURM_PROCID"), _int(env, "SLURM_NTASKS")
    if rank is None or size is None:
        return None
    if env.get("SLURM_STEP_ID", "") in ("batch", "extern", "4294967294", "4294967295"):
        return None  # the batch script itself, not a task of an srun step
    local = _int(env, "SLURM_LOCALID") or 0
    local_size = _tasks_per_node(env.get("SLURM_STEP_TASKS_PER_NODE")) or _tasks_per_node(
        env.get("SLURM_NTASKS_PER_NODE")
    )
    return LaunchInfo("slurm", rank, size, local, local_size)


def _mpich(env: Mapping[str, str]) -> LaunchInfo | None:
    rank, size = _int(env, "PMI_RANK"), _int(env, "PMI_SIZE")
    if rank is None or size is None:
        return None
    local = _int(env, "MPI_LOCALRANKID")
    if local is None:
        local = _int(env, "PMI_LOCAL_RANK") or 0
    local_size = _int(env, "MPI_LOCALNRANKS") or _int(env, "PMI_LOCAL_SIZE")
    return LaunchInfo("mpich", rank, size, local, local_size)


def _pmix(env: Mapping[str, str]) -> LaunchInfo | None:
    rank = _int(env, "PMIX_RANK")
    size = _int(env, "PMIX_SIZE") or _int(env, "OMPI_COMM_WORLD_SIZE") or _int(env, "SLURM_NTASKS")
    if rank is None or size is None:
        return None
    return LaunchInfo("pmix", rank, size, _int(env, "PMIX_LOCAL_RANK") or 0, None)


LAUNCHERS: dict[str, Callable[[Mapping[str, str]], LaunchInfo | None]] = {
    "jsrun": _jsrun,
    "openmpi": _openmpi,
    "flux": _flux,
    "slurm": _slurm,
    "mpich": _mpich,
    "pmix": _pmix,
}
"""Detectors, most specific first: name -> function(env) -> LaunchInfo or None."""


def _agrees_with_pmi(info: LaunchInfo, env: Mapping[str, str]) -> bool:
    """False when PMI variables exist and say another rank/size (stale outer-launcher variables)."""
    pmi = _mpich(env) or _pmix(env)
    if pmi is None or info.launcher in ("mpich", "pmix"):
        return True
    return pmi.rank == info.rank and pmi.size == info.size


def detect_launch(env: Mapping[str, str] | None = None) -> LaunchInfo:
    """Rank, size and local rank of this process from the launcher's environment.

    Args:
        env: the environment to read (default ``os.environ``), a plain mapping in tests.

    Returns:
        The first launcher (in :data:`LAUNCHERS` order) whose variables are present and consistent;
        ``LaunchInfo("single", 0, 1, 0, 1)`` when none is.

    Raises:
        LaunchError: a variable is not an integer, or a rank is out of range for its size.
    """
    env = os.environ if env is None else env
    for detector in LAUNCHERS.values():
        info = detector(env)
        if info is not None and _agrees_with_pmi(info, env):
            return info
    return LaunchInfo("single", 0, 1, 0, 1)
