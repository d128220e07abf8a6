"""MD job backends (local subprocesses, Slurm, Flux, handoff to a workflow manager) and the job
emitter with its write-ahead journal. ``make_backend(jobs_cfg, state_dir)`` picks a backend from
the registry; ``JobEmitter`` turns picked patches into jobs exactly once across crashes (see
docs/jobs.md).
"""

from mummi_ml.backends.base import (
    JOB_NAME_PATTERN,
    BackendError,
    BackendUnavailableError,
    JobBackend,
    JobInfo,
    JobRejectedError,
    JobState,
)
from mummi_ml.backends.config import (
    COMMAND_PLACEHOLDERS,
    DEFAULT_COMMAND,
    FluxOptions,
    HandoffOptions,
    JobsConfig,
    SlurmOptions,
)
from mummi_ml.backends.emitter import (
    JOB_STATES,
    EmitterError,
    JobEmitter,
    JobRecord,
    JobWaitTimeout,
)
from mummi_ml.backends.flux import FluxBackend
from mummi_ml.backends.handoff import (
    HandoffAck,
    HandoffBackend,
    HandoffConsumer,
    HandoffError,
    HandoffRecord,
)
from mummi_ml.backends.jobdir import JobDirError, JobDirs
from mummi_ml.backends.journal import Journal, JournalError
from mummi_ml.backends.local import LocalBackend
from mummi_ml.backends.registry import BACKENDS, backend_class, make_backend
from mummi_ml.backends.slurm import SlurmBackend

__all__ = [
    "BACKENDS",
    "COMMAND_PLACEHOLDERS",
    "DEFAULT_COMMAND",
    "JOB_NAME_PATTERN",
    "JOB_STATES",
    "BackendError",
    "BackendUnavailableError",
    "JobRejectedError",
    "EmitterError",
    "FluxBackend",
    "FluxOptions",
    "HandoffAck",
    "HandoffBackend",
    "HandoffConsumer",
    "HandoffError",
    "HandoffOptions",
    "HandoffRecord",
    "JobBackend",
    "JobDirError",
    "JobDirs",
    "JobEmitter",
    "JobInfo",
    "JobRecord",
    "JobState",
    "JobWaitTimeout",
    "JobsConfig",
    "Journal",
    "JournalError",
    "LocalBackend",
    "SlurmBackend",
    "SlurmOptions",
    "backend_class",
    "make_backend",
]
