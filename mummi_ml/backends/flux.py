"""``flux`` backend: jobs submitted to the enclosing Flux instance through flux-python.

``flux`` (the Python bindings that come with flux-core; tested with 0.88.0) is imported lazily,
when the backend is made, so that nothing else in mummi-ml needs it. Jobs are built with
``flux.job.JobspecV1.from_command`` (argv as a list, never a shell string) from the options of
``jobs.flux`` (tasks, cores, GPUs, nodes, exclusive, time limit, queue, bank, extra attributes),
submitted with ``flux.job.submit`` (urgency); states come from the job-list service
(``flux.job.job_list_id``, and ``job_list`` filtered by name for ``find``), waiting on one job
uses the job's event log (``flux.job.event_watch_async``), and ``flux.job.cancel`` cancels.

Tasks: a job runs ``jobs.flux.num_tasks`` tasks unless submitted with ``tasks`` (the jobspec's
``num_tasks``). The job shell starts the tasks and gives them PMI (its ``pmi`` plugin: simple
PMI-1 over ``PMI_FD``, which MPICH, the mpich wheel's mpi4py included, uses by default), so the
tasks of a job are one MPI program whose ``COMM_WORLD`` has that many ranks; no option or
environment variable is needed for that. The jobspec's environment is the service's less its
own MPI launch variables (:mod:`mummi_ml.backends.jobenv`), as with every backend.

What a finished job reports (``JobInfo``):

- ``exit_code`` from job-list's ``waitstatus``: the exit status, or ``-N`` when the job was
  killed by signal N. Flux's job shell exits ``128 + N`` when a task dies of signal N (as a POSIX
  shell does), so an exit status 129..192 is reported as ``-(status - 128)``, as ``flux jobs``
  reads it ("Killed"); a program that exits 137 on its own therefore also reads as ``-9``.
- ``reason``: Flux's own words, as ``flux jobs -o endreason`` prints them (``Exit 3``,
  ``Killed``, ``Timeout``, ``Canceled: NOTE``, ``Exception: type=alloc note=unsatisfiable
  request: ...``), with the exception note added to ``Timeout``.
- ``permanent``: True for a request the scheduler can never satisfy (an ``alloc`` exception
  whose note says "unsatisfiable", e.g. a GPU asked of an instance without GPUs): resubmitting
  it cannot succeed, so the emitter records it failed at once instead of retrying. A submission
  the instance rejects outright (an unknown queue, a bad attribute: ``EINVAL``/``EPERM``) raises
  :class:`~mummi_ml.backends.base.JobRejectedError` for the same reason.

Job names in Flux: ``flux jobs`` shows 10 characters of a name, so a mummi name
``<prefix><tag>-<patch id>-<attempt>`` (e.g. ``mummi-8001a2-42-1``) would show as ``mummi-800+``
for every job. The backend therefore gives Flux the name with the campaign part moved to the end,
``<patch id>-<attempt>@<prefix><tag>`` (``42-1@mummi-8001a2``, shown as ``42-1@mumm+``). The
mapping is exact both ways ('@' never occurs in a mummi name), ``find`` asks job-list for the
Flux name, and every ``JobInfo.name`` is the mummi name. Other names are given to Flux as they are.

Descriptors: a synchronous flux-python call on a future makes a private reactor (an epoll
descriptor) that lives as long as the future. Every call here runs in a helper that returns plain
data, so no future outlives the call, not even through the traceback of an error a caller keeps
(a log record does): many failing queries leave the descriptor count flat.
"""

from __future__ import annotations

import errno
import os
import re
import shutil
import signal
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from mummi_ml.backends.base import (
    BackendError,
    BackendUnavailableError,
    JobBackend,
    JobInfo,
    JobRejectedError,
    JobState,
)
from mummi_ml.backends.config import JobsConfig
from mummi_ml.backends.jobenv import job_environment

__all__ = ["FluxBackend", "flux_bindings_dir", "flux_job_name", "mummi_job_name"]

#: job-list attributes read for every job (the id is always returned; see flux-core's
#: src/modules/job-list/job_util.c for the valid names)
_ATTRS = [
    "name", "state", "result", "waitstatus", "exception_occurred", "exception_severity",
    "exception_type", "exception_note",
]  # fmt: skip

#: errno values of a submission that the instance rejects for what it is (not a hiccup)
_REJECTED = (errno.EINVAL, errno.EPERM, errno.EPROTO)

T = TypeVar("T")


def flux_job_name(name: str, prefix: str) -> str:
    """The name Flux gets for the mummi job name ``name`` (see the module docstring).

    ``flux_job_name("mummi-8001a2-42-1", "mummi-") == "42-1@mummi-8001a2"``; a name that is not
    ``<prefix><6 hex digits>-<rest>`` is returned as it is.
    """
    m = re.match(rf"^({re.escape(prefix)}[0-9a-f]{{6}})-(.+)$", name)
    return f"{m.group(2)}@{m.group(1)}" if m else name


def mummi_job_name(flux_name: str) -> str:
    """Inverse of :func:`flux_job_name`: ``"42-1@mummi-8001a2"`` -> ``"mummi-8001a2-42-1"``."""
    rest, at, campaign = flux_name.rpartition("@")
    return f"{campaign}-{rest}" if at and rest else flux_name


def flux_bindings_dir() -> Path | None:
    """The flux-python directory of the ``flux`` command on PATH for this Python
    (``<prefix>/lib/flux/python3.X``, what ``flux env`` puts on PYTHONPATH), or None."""
    exe = shutil.which("flux")
    if exe is None:
        return None
    v = sys.version_info
    found = Path(exe).resolve().parents[1] / "lib" / "flux" / f"python{v[0]}.{v[1]}"
    return found if (found / "flux").is_dir() else None


def _import_flux() -> Any:
    """Import flux-python: from sys.path, else from the flux-core that runs this instance (the
    ``flux`` on PATH: ``flux start`` puts its bin directory there but not its bindings)."""
    try:
        import flux  # noqa: F401
        import flux.constants
        import flux.job
    except ImportError as exc:
        first = exc
        extra = flux_bindings_dir()
        if extra is not None and str(extra) not in sys.path:
            sys.path.append(str(extra))
            return _import_flux()
        where = f"; tried {extra}" if extra else ""
        raise BackendUnavailableError(
            f"the flux Python bindings are not importable ({first}{where}); install flux-core "
            "(which ships them) or use jobs.backend=local|slurm"
        ) from None
    return flux


def _plain(call: Callable[[], T]) -> tuple[T | None, OSError | None]:
    """Run one flux-python call; returns ``(value, None)`` or ``(None, error)``.

    The error returned is a fresh OSError (errno and text only, no traceback), so it references
    no future; and the SIGINT handler that flux-python's ``interruptible`` leaves at SIG_DFL when
    a call fails is put back.
    """
    main = threading.current_thread() is threading.main_thread()
    sigint = signal.getsignal(signal.SIGINT) if main else None
    try:
        return call(), None
    except OSError as exc:
        return None, OSError(exc.errno, exc.strerror or str(exc))
    finally:
        if main and sigint is not None and signal.getsignal(signal.SIGINT) != sigint:
            signal.signal(signal.SIGINT, sigint)


def _why(err: OSError) -> str:
    return err.strerror or os.strerror(err.errno or 0)


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
        handle, err = _plain(lambda: self.flux.Flux(self.opts.uri) if self.opts.uri
                             else self.flux.Flux())  # fmt: skip
        if err is not None:
            where = self.opts.uri or os.environ.get("FLUX_URI", "(no FLUX_URI set)")
            raise BackendUnavailableError(
                f"flux backend: cannot connect to a Flux instance at {where}: {_why(err)}"
            )
        self._handle: Any = handle

    @classmethod
    def unavailable_reason(cls) -> str | None:
        try:
            flux = _import_flux()
        except BackendUnavailableError as exc:
            return str(exc)
        _, err = _plain(flux.Flux)
        if err is not None:
            return f"no Flux instance to connect to ({_why(err)}); run under `flux start`"
        return None

    # ---- helpers -----------------------------------------------------------------------------

    @property
    def handle(self) -> Any:
        """The flux.Flux handle (BackendError after :meth:`close`)."""
        if self._handle is None:
            raise BackendError("flux: the backend is closed")
        return self._handle

    def _jobid(self, job_id: str) -> Any:
        try:
            return self.flux.job.JobID(job_id)
        except (TypeError, ValueError, OSError):
            raise BackendError(f"flux: not a Flux job id: {job_id!r}") from None

    def _spec(self, name: str, argv: list[str], job_dir: Path, tasks: int) -> Any:
        """The jobspec of one job of ``tasks`` tasks from ``jobs.flux`` (a ValueError/TypeError
        from flux-python for options it refuses)."""
        o = self.opts
        spec = self.flux.job.JobspecV1.from_command(
            argv,
            num_tasks=tasks,
            cores_per_task=o.cores_per_task,
            gpus_per_task=o.gpus_per_task or None,
            num_nodes=o.nodes,
            exclusive=o.exclusive,
            duration=o.time_limit,
            environment=job_environment(),
            cwd=str(job_dir),
            name=flux_job_name(name, self.cfg.name_prefix),
            output=str(job_dir / f"{name}.out"),
            error=str(job_dir / f"{name}.err"),
            queue=o.queue,
            bank=o.bank,
        )
        for key, value in o.extra_attributes.items():
            spec.setattr(key, value)
        return spec

    def _info(self, job: dict[str, Any], job_id: str) -> JobInfo:
        """JobInfo of one job-list entry (``_ATTRS``)."""
        c = self.flux.constants
        name = mummi_job_name(str(job.get("name", "")))
        state = int(job.get("state", 0))
        if state != c.FLUX_JOB_STATE_INACTIVE:
            running = state & (c.FLUX_JOB_STATE_RUN | c.FLUX_JOB_STATE_CLEANUP)
            return JobInfo(name, job_id, JobState.RUNNING if running else JobState.PENDING)
        result = int(job.get("result", 0))
        code = self._exit_code(job.get("waitstatus"))
        if result == c.FLUX_JOB_RESULT_COMPLETED:
            return JobInfo(name, job_id, JobState.COMPLETED, code)
        reason = self.flux.job.JobInfo(job).inactive_reason
        kind, note = job.get("exception_type"), job.get("exception_note") or ""
        if result == c.FLUX_JOB_RESULT_TIMEOUT and note:
            reason = f"{reason}: {note}"
        if result == c.FLUX_JOB_RESULT_CANCELED:
            return JobInfo(name, job_id, JobState.CANCELLED, code, reason or "Canceled")
        permanent = (
            kind == "alloc" and job.get("waitstatus") is None and "unsatisfiable" in note.lower()
        )
        return JobInfo(name, job_id, JobState.FAILED, code, reason or f"exit code {code}",
                       permanent=permanent)  # fmt: skip

    @staticmethod
    def _exit_code(waitstatus: Any) -> int | None:
        """Exit status from a wait status; ``-N`` for signal N (also the shell's ``128 + N``)."""
        if waitstatus is None:
            return None
        status = int(waitstatus)
        if os.WIFSIGNALED(status):
            return -os.WTERMSIG(status)
        code = os.WEXITSTATUS(status)
        return -(code - 128) if 128 < code <= 128 + 64 else code

    def _list_ids(self, job_ids: list[str]) -> dict[str, tuple[dict | None, OSError | None]]:
        """job-list entries of the ids, all requests in flight at once; plain data only."""
        fj = self.flux.job
        ids = {j: self._jobid(j) for j in job_ids}  # a bad id raises before any request
        futures = {j: fj.job_list_id(self.handle, jid, attrs=_ATTRS) for j, jid in ids.items()}
        return {j: _plain(fut.get_job) for j, fut in futures.items()}

    def _list_name(self, flux_name: str) -> tuple[list[dict] | None, OSError | None]:
        """job-list entries of every job with that Flux name (any state); plain data only."""
        rpc = self.flux.job.job_list(self.handle, attrs=_ATTRS, name=flux_name, max_entries=0)
        return _plain(rpc.get_jobs)

    # ---- hooks -------------------------------------------------------------------------------

    def _submit(self, name: str, argv: list[str], job_dir: Path, tasks: int) -> str:
        fj = self.flux.job
        if self.opts.nodes is not None and tasks < self.opts.nodes:
            raise JobRejectedError(f"flux: {name!r}: {tasks} task(s) cannot fill "
                                   f"jobs.flux.nodes={self.opts.nodes} nodes")
        try:
            spec = self._spec(name, argv, job_dir, tasks)
        except (TypeError, ValueError) as exc:
            raise JobRejectedError(f"flux: jobspec of {name!r}: {exc}") from None
        jobid, err = _plain(lambda: fj.submit(self.handle, spec, urgency=self.opts.urgency))
        if err is not None:
            cls = JobRejectedError if err.errno in _REJECTED else BackendError
            raise cls(f"flux: submit of {name!r} failed: {_why(err)}")
        return fj.JobID(jobid).f58

    def _states(self, job_ids: list[str]) -> dict[str, JobInfo]:
        out = {}
        for j, (job, err) in self._list_ids(job_ids).items():
            if err is None:
                out[j] = self._info(job or {}, j)
            elif err.errno != errno.ENOENT:  # ENOENT: unknown id, UNKNOWN by the base class
                raise BackendError(f"flux: state of {j} failed: {_why(err)}")
        return out

    def _find(self, name: str) -> JobInfo | None:
        flux_name = flux_job_name(name, self.cfg.name_prefix)
        jobs, err = self._list_name(flux_name)
        if err is not None:
            raise BackendError(f"flux: listing jobs named {name!r} failed: {_why(err)}")
        jobs = [j for j in jobs or [] if j.get("name") == flux_name]
        if not jobs:
            return None
        newest = max(jobs, key=lambda j: int(j["id"]))
        return self._info(newest, self.flux.job.JobID(newest["id"]).f58)

    def _cancel(self, job_id: str) -> None:
        jobid = self._jobid(job_id)
        _, err = _plain(lambda: self.flux.job.cancel(self.handle, jobid))
        if err is not None and not self.state(job_id).state.is_terminal:
            raise BackendError(f"flux: cancel of {job_id} failed: {_why(err)}")

    def wait_event(self, job_id: str, event: str = "clean", timeout_s: float = 60.0) -> None:
        """Block until the job's event log has ``event`` (``clean``: fully ended), watching the
        event log (``flux.job.event_watch_async``) rather than polling.

        Raises BackendError for an unknown id, an event log that ends without ``event``, or no
        such event within ``timeout_s`` (s).
        """
        problem = self._watch(self._jobid(job_id), event, timeout_s)
        if problem:
            raise BackendError(f"flux: job {job_id}: {problem}")

    def _watch(self, jobid: Any, event: str, timeout_s: float) -> str:
        """Watch the event log for ``event``; "" when seen, else what went wrong (plain text)."""
        watch = self.flux.job.event_watch_async(self.handle, jobid)
        deadline = time.monotonic() + timeout_s
        try:
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    return f"no {event!r} event in {timeout_s} s"
                _, err = _plain(lambda left=left: watch.wait_for(left))
                if err is not None:
                    if err.errno == errno.ETIMEDOUT:
                        continue
                    return f"watching the event log failed: {_why(err)}"
                entry, err = _plain(watch.get_event)
                if err is not None:
                    if err.errno == errno.ENOENT:
                        return "no such job"
                    return f"watching the event log failed: {_why(err)}"
                if entry is None:
                    return f"the event log ended before {event!r}"
                if entry.name == event:
                    return ""
        finally:
            if watch.needs_cancel:
                _plain(watch.cancel)

    def close(self) -> None:
        """Drop the handle (flux-python closes it when the last reference goes; calling its
        ``close()`` is refused). Running jobs keep running; idempotent."""
        self._handle = None
