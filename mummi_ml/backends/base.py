"""The job backend interface: a base class that owns the public API, validation and logging.

A backend runs commands (argv lists) as named jobs and answers what became of them. Each concrete
backend (``local``, ``slurm``, ``flux``, ``handoff``) fills four hooks: ``_submit``, ``_states``,
``_find`` and ``_cancel``. A job runs its argv as one program of ``tasks`` processes: with ``tasks >
1`` one MPI program whose ``COMM_WORLD`` has ``tasks`` ranks, launched the way the backend's
scheduler launches MPI programs (local: ``mpiexec -n``; slurm: ``srun --mpi``; flux: the jobspec's
task count; handoff: the count in the record, for the workflow manager). Job names are unique per
campaign; :meth:`JobBackend.find` looks a job up by name, which is what makes exactly-once
submission across a crash possible (see ``emitter.py``).
"""

from __future__ import annotations

import enum
import logging
import re
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from mummi_ml.backends.config import JobsConfig
from mummi_ml.errors import MummiMLError

__all__ = [
    "JobState",
    "JobInfo",
    "JobBackend",
    "BackendError",
    "BackendUnavailableError",
    "JobRejectedError",
    "JOB_NAME_PATTERN",
]

log = logging.getLogger(__name__)

#: Job names: letters, digits, ``_.-``, starting with a letter, at most 100 characters.
JOB_NAME_PATTERN = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]{0,99}$")


class BackendError(MummiMLError, RuntimeError):
    """A backend call failed: bad argument, scheduler command error, or unknown job."""


class BackendUnavailableError(BackendError):
    """The backend cannot be used on this machine (scheduler or bindings not installed)."""


class JobRejectedError(BackendError):
    """The scheduler refused a submission for what it asks (e.g. an unknown queue): the same
    submission can never succeed, so it is not retried."""


class JobState(str, enum.Enum):
    """State of one job as the backend reports it."""

    PENDING = "pending"  # accepted, not started (queued, held, being launched)
    RUNNING = "running"
    COMPLETED = "completed"  # ended with exit code 0
    FAILED = "failed"  # non-zero exit, killed, timed out, node failure, or lost
    CANCELLED = "cancelled"  # cancelled by a user or by :meth:`JobBackend.cancel`
    UNKNOWN = "unknown"  # the backend has no record of the job (any more)

    @property
    def is_terminal(self) -> bool:
        """True for states a job never leaves (completed, failed, cancelled)."""
        return self in (JobState.COMPLETED, JobState.FAILED, JobState.CANCELLED)


@dataclass(frozen=True)
class JobInfo:
    """What a backend knows of one job.

    Attributes:
        name: the job name given at submission.
        job_id: the backend's id (local: the name; slurm: the numeric job id; flux: f58 id).
        state: current state.
        exit_code: exit status of the command when known (negative: killed by that signal).
        reason: short text for failed/cancelled/unknown states (the scheduler's own words
            where it gives them), "" otherwise.
        permanent: True for a failure that a resubmission cannot avoid (the scheduler can never
            satisfy the request, e.g. a GPU asked of a cluster without GPUs): not retried.
    """

    name: str
    job_id: str
    state: JobState
    exit_code: int | None = None
    reason: str = ""
    permanent: bool = False


class JobBackend(ABC):
    """Run commands as named jobs. Subclasses fill the ``_hooks``; do not override the API.

    Args:
        cfg: the ``jobs:`` config section (backend-specific options included).
        state_dir: a directory the backend may keep files in (created if missing).
    """

    #: registry name of the backend
    name: str = ""

    def __init__(self, cfg: JobsConfig, state_dir: Path):
        self.cfg = cfg
        self.state_dir = Path(state_dir)
        self.state_dir.mkdir(parents=True, exist_ok=True)

    # ---- availability ------------------------------------------------------------------------

    @classmethod
    def unavailable_reason(cls) -> str | None:
        """None when the backend can run jobs here, else a one-line reason (for skips/errors)."""
        return None

    # ---- public API (validation + logging, then the hook) --------------------------------------

    @property
    def default_tasks(self) -> int:
        """Processes of a job submitted without ``tasks``: :attr:`JobsConfig.default_tasks`
        (flux: ``jobs.flux.num_tasks``; the other backends: 1)."""
        return self.cfg.default_tasks

    def submit(self, name: str, argv: Sequence[str], job_dir: Path, *,
               tasks: int | None = None) -> str:
        """Start ``argv`` as job ``name`` with working directory ``job_dir``; returns the job id.

        Stdout/stderr go to ``job_dir/<name>.out`` / ``<name>.err`` (all ranks of a job of
        several tasks together). The name must not have been used before with this backend
        (check with :meth:`find` when unsure).

        Args:
            tasks: number of processes ``argv`` runs as (count >= 1): above 1, one MPI program
                whose ``COMM_WORLD`` has ``tasks`` ranks. None: :attr:`default_tasks`.
        """
        self._check_name(name)
        if tasks is None:
            tasks = self.default_tasks
        if isinstance(tasks, bool) or not isinstance(tasks, int) or tasks < 1:
            raise BackendError(f"tasks: expected an integer >= 1 (MPI ranks), got {tasks!r}")
        if isinstance(argv, (str, bytes)) or not argv:
            raise BackendError(f"argv: expected a non-empty list of strings, got {argv!r}")
        argv = list(argv)
        bad = [a for a in argv if not isinstance(a, str)]
        if bad:
            raise BackendError(f"argv: every element must be a str, got {bad[0]!r}")
        job_dir = Path(job_dir)
        if not job_dir.is_absolute() or not job_dir.is_dir():
            raise BackendError(f"job_dir: expected an existing absolute directory, got {job_dir}")
        job_id = self._submit(name, argv, job_dir, tasks)
        log.info("%s: submitted %s as %s (%d task%s): %s", self.name, name, job_id, tasks,
                 "" if tasks == 1 else "s", " ".join(argv))
        return job_id

    def states(self, job_ids: Sequence[str]) -> dict[str, JobInfo]:
        """Current state of each job id (one query for all); unknown ids give ``UNKNOWN``."""
        ids = [str(j) for j in job_ids]
        if not ids:
            return {}
        got = self._states(ids)
        return {j: got.get(j) or JobInfo("", j, JobState.UNKNOWN, reason="not found") for j in ids}

    def state(self, job_id: str) -> JobInfo:
        """Current state of one job."""
        return self.states([job_id])[str(job_id)]

    def find(self, name: str) -> JobInfo | None:
        """The job submitted under ``name`` (newest if several), or None if there is none."""
        self._check_name(name)
        info = self._find(name)
        log.debug("%s: find %s -> %s", self.name, name, info)
        return info

    def cancel(self, job_id: str) -> None:
        """Ask the backend to stop the job (no error if it already ended)."""
        self._cancel(str(job_id))
        log.info("%s: cancelled %s", self.name, job_id)

    def close(self) -> None:  # noqa: B027  (optional hook: most backends hold nothing)
        """Release connections/handles (running jobs keep running)."""

    # ---- hooks -----------------------------------------------------------------------------------

    @abstractmethod
    def _submit(self, name: str, argv: list[str], job_dir: Path, tasks: int) -> str:
        """Start the job; ``tasks`` (>= 1, validated) processes, one MPI program if above 1."""

    @abstractmethod
    def _states(self, job_ids: list[str]) -> dict[str, JobInfo]: ...

    @abstractmethod
    def _find(self, name: str) -> JobInfo | None: ...

    @abstractmethod
    def _cancel(self, job_id: str) -> None: ...

    # ---- helpers ---------------------------------------------------------------------------------

    @staticmethod
    def _check_name(name: str) -> None:
        if not isinstance(name, str) or not JOB_NAME_PATTERN.match(name):
            raise BackendError(
                f"job name: expected {JOB_NAME_PATTERN.pattern} (letters, digits, _.-), "
                f"got {name!r}"
            )

    def __repr__(self) -> str:
        return f"{type(self).__name__}(state_dir={str(self.state_dir)!r})"
