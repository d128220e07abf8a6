"""``flux`` backend: jobs submitted to the enclosing Flux instance through flux-python.

``flux`` (the Python bindings that come with flux-core) is imported lazily, when the backend is
made, so that nothing else in mummi-ml needs it. Jobs are built with
``flux.job.JobspecV1.from_command`` (argv as a list, never a shell string), named with the
``system.job.name`` attribute, submitted with ``flux.job.submit``; states come from the job-list
service (``flux.job.job_list_id`` / ``job_list`` by name), waiting on one job uses the job's event
log (``flux.job.event_wait``), and ``flux.job.cancel`` cancels.
"""

from __future__ import annotations

import errno
import os
import time
from pathlib import Path
from typing import Any

from mummi_ml.backends.base import (
    BackendError,
    BackendUnavailableError,
    JobBackend,
    JobInfo,
    JobState,
)
from mummi_ml.backends.config import JobsConfig

__all__ = ["FluxBackend"]

_ATTRS = ["id", "name", "state", "result", "returncode", "exception_type"]


def _import_flux() -> Any:
    try:
        import flux  # noqa: F401
        import flux.constants
        import flux.job
    except ImportError as exc:
        raise BackendUnavailableError(
            f"the flux Python bindings are not importable ({exc}); install flux-core "
            "(which ships them) or use jobs.backend=local|slurm"
        ) from None
    return flux


class FluxBackend(JobBackend):
    """Jobs in a Flux instance (``flux start``, or an allocation from ``flux batch/alloc``)."""

    name = "flux"

    def __init__(self, cfg: JobsConfig, state_dir: Path):
        super().__init__(cfg, state_dir)
        try:
            self.flux = _import_flux()
        except BackendUnavailableError as exc:
            raise BackendUnavailableError(f"flux backend: {exc}") from None
        self.opts = cfg.flux
        try:
            self.handle = self.flux.Flux(self.opts.uri) if self.opts.uri else self.flux.Flux()
        except OSError as exc:
            where = self.opts.uri or os.environ.get("FLUX_URI", "(no FLUX_URI set)")
            raise BackendUnavailableError(
                f"flux backend: cannot connect to a Flux instance at {where}: {exc}"
            ) from None

    @classmethod
    def unavailable_reason(cls) -> str | None:
        try:
            flux = _import_flux()
        except BackendUnavailableError as exc:
            return str(exc)
        try:
            flux.Flux()
        except OSError as exc:
            return f"no Flux instance to connect to ({exc}); run under `flux start`"
        return None

    # ---- helpers -----------------------------------------------------------------------------

    def _jobid(self, job_id: str) -> Any:
        try:
            return self.flux.job.JobID(job_id)
        except (TypeError, ValueError, OSError):
            raise BackendError(f"flux: not a Flux job id: {job_id!r}") from None

    def _info(self, job: dict, job_id: str | None = None) -> JobInfo:
        c = self.flux.constants
        jid = job_id or self.flux.job.JobID(job["id"]).f58
        state = int(job.get("state", 0))
        if state & c.FLUX_JOB_STATE_PENDING:
            return JobInfo(job.get("name", ""), jid, JobState.PENDING)
        if state != c.FLUX_JOB_STATE_INACTIVE:
            return JobInfo(job.get("name", ""), jid, JobState.RUNNING)
        result = int(job.get("result", 0))
        code = job.get("returncode")
        code = int(code) if code is not None else None
        if result == c.FLUX_JOB_RESULT_COMPLETED:
            return JobInfo(job.get("name", ""), jid, JobState.COMPLETED, code)
        if result == c.FLUX_JOB_RESULT_CANCELED:
            return JobInfo(job.get("name", ""), jid, JobState.CANCELLED, code, "cancelled")
        why = (
            "timeout"
            if result == c.FLUX_JOB_RESULT_TIMEOUT
            else (job.get("exception_type") or f"exit code {code}")
        )
        return JobInfo(job.get("name", ""), jid, JobState.FAILED, code, str(why))

    # ---- hooks -------------------------------------------------------------------------------

    def _submit(self, name: str, argv: list[str], job_dir: Path) -> str:
        fj = self.flux.job
        spec = fj.JobspecV1.from_command(
            argv,
            num_tasks=self.opts.num_tasks,
            cores_per_task=self.opts.cores_per_task,
            gpus_per_task=self.opts.gpus_per_task or None,
        )
        spec.cwd = str(job_dir)
        spec.environment = dict(os.environ)
        spec.stdout = str(job_dir / f"{name}.out")
        spec.stderr = str(job_dir / f"{name}.err")
        spec.setattr("system.job.name", name)
        try:
            jobid = fj.submit(self.handle, spec)
        except OSError as exc:
            raise BackendError(f"flux: submit of {name!r} failed: {exc}") from None
        return fj.JobID(jobid).f58

    def _states(self, job_ids: list[str]) -> dict[str, JobInfo]:
        out = {}
        futures = [
            (j, self.flux.job.job_list_id(self.handle, self._jobid(j), attrs=_ATTRS))
            for j in job_ids
        ]
        for j, fut in futures:
            try:
                out[j] = self._info(fut.get_job(), j)
            except FileNotFoundError:
                continue  # unknown id: reported UNKNOWN by the base class
            except OSError as exc:
                raise BackendError(f"flux: state of {j} failed: {exc}") from None
        return out

    def _find(self, name: str) -> JobInfo | None:
        try:
            rpc = self.flux.job.job_list(self.handle, attrs=_ATTRS, name=name, max_entries=1000)
            jobs = [j for j in rpc.get_jobs() if j.get("name") == name]
        except OSError as exc:
            raise BackendError(f"flux: listing jobs named {name!r} failed: {exc}") from None
        if not jobs:
            return None
        return self._info(max(jobs, key=lambda j: int(j["id"])))

    def _cancel(self, job_id: str) -> None:
        try:
            self.flux.job.cancel(self.handle, self._jobid(job_id))
        except OSError as exc:
            info = self.state(job_id)
            if not info.state.is_terminal:
                raise BackendError(f"flux: cancel of {job_id} failed: {exc}") from None

    def wait_event(self, job_id: str, event: str = "clean", timeout_s: float = 60.0) -> None:
        """Block until the job's event log has ``event`` (``clean``: fully ended), watching the
        event log (``flux.job.event_watch_async``) rather than polling."""
        watch = self.flux.job.event_watch_async(self.handle, self._jobid(job_id))
        deadline = time.monotonic() + timeout_s
        try:
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise BackendError(f"flux: job {job_id}: no {event!r} event in {timeout_s} s")
                try:
                    watch.wait_for(left)
                except OSError as exc:
                    if exc.errno == errno.ETIMEDOUT:
                        continue
                    raise BackendError(f"flux: watching job {job_id} failed: {exc}") from None
                entry = watch.get_event()
                if entry is None:
                    raise BackendError(f"flux: event log of {job_id} ended before {event!r}")
                if entry.name == event:
                    return
        finally:
            if getattr(watch, "needs_cancel", False):
                watch.cancel()

    def close(self) -> None:
        close = getattr(self.handle, "close", None)
        if close is not None:
            close()
