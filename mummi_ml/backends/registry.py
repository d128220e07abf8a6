"""The explicit ``{name: class}`` registry of job backends and :func:`make_backend`."""

from __future__ import annotations

from pathlib import Path

from mummi_ml.backends.base import BackendError, JobBackend
from mummi_ml.backends.config import JobsConfig
from mummi_ml.backends.flux import FluxBackend
from mummi_ml.backends.handoff import HandoffBackend
from mummi_ml.backends.local import LocalBackend
from mummi_ml.backends.slurm import SlurmBackend

__all__ = ["BACKENDS", "backend_class", "make_backend"]

#: every job backend by its ``jobs.backend`` name
BACKENDS: dict[str, type[JobBackend]] = {
    "local": LocalBackend,
    "slurm": SlurmBackend,
    "flux": FluxBackend,
    "handoff": HandoffBackend,
}


def backend_class(name: str) -> type[JobBackend]:
    """The backend class registered as ``name``; the error lists the valid names."""
    try:
        return BACKENDS[name]
    except (KeyError, TypeError):
        raise BackendError(
            f"jobs.backend: unknown backend {name!r}; expected one of {', '.join(BACKENDS)}"
        ) from None


def make_backend(jobs_cfg: JobsConfig, state_dir: Path) -> JobBackend:
    """Build the backend named by ``jobs_cfg.backend``, keeping its files under ``state_dir``.

    Raises:
        BackendError: unknown name.
        BackendUnavailableError: the scheduler/bindings are missing here (the message says which).
    """
    return backend_class(jobs_cfg.backend)(jobs_cfg, Path(state_dir))
