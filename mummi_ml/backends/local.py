"""``local`` backend: each job is a subprocess of this machine (the embedded default).

Every job has a record directory ``<state_dir>/local/<name>/``: ``spec.json`` (argv, job_dir, tasks
and the ``mpiexec`` that starts a job of several tasks; written before launch), ``launched.json``
(runner pid, written after launch), and, written by the runner (:mod:`mummi_ml.backends._runner`)
itself, ``claimed/``, ``started.json`` and ``exit.json``. Jobs run in their own session, so they
survive a crash of the service; the records let a restarted service find them by name and learn how
they ended. The number of jobs at once is the emitter's business (``jobs.slots``); this backend
starts what it is given.

A job of ``tasks > 1`` runs as ``mpiexec -n TASKS ARGV`` on this machine: the ``mpiexec`` next to
the Python running mummi-ml (the virtual environment's MPICH, the MPI that its mpi4py is built
against), else the first on ``PATH``. Cancelling it signals ``mpiexec``, which forwards the signal
to every rank.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from mummi_ml.backends._runner import proc_start_ticks, write_record
from mummi_ml.backends.base import (
    JOB_NAME_PATTERN,
    BackendError,
    JobBackend,
    JobInfo,
    JobState,
)
from mummi_ml.backends.config import JobsConfig

__all__ = ["LocalBackend"]

#: a job record with no launch record after this long was lost mid-submission (s)
LAUNCH_GRACE_S = 5.0


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return None  # torn write of a crashed process: treat as absent


def find_mpiexec() -> str | None:
    """The ``mpiexec`` that starts a local job of several tasks: the one next to
    ``sys.executable`` (a virtual environment's MPI, that of its mpi4py), else the first on
    ``PATH``; None when there is none."""
    beside = Path(sys.executable).parent / "mpiexec"
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    return shutil.which("mpiexec")


def _alive(pid: int, start_ticks: int | None) -> bool:
    """True if ``pid`` runs and is the same process (same start time), not a zombie."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True  # no /proc (not Linux): trust kill(0)
    if stat[stat.rindex(")") + 2] == "Z":
        return False
    return start_ticks is None or proc_start_ticks(pid) == start_ticks


class LocalBackend(JobBackend):
    """Jobs as local subprocesses, each under a small runner that records its exit status."""

    name = "local"

    def __init__(self, cfg: JobsConfig, state_dir: Path):
        super().__init__(cfg, state_dir)
        self.records = self.state_dir / "local"
        self.records.mkdir(parents=True, exist_ok=True)
        self._procs: dict[str, subprocess.Popen] = {}  # runners started by this process

    def _submit(self, name: str, argv: list[str], job_dir: Path, tasks: int) -> str:
        self._reap()
        mpiexec = None
        if tasks > 1:
            mpiexec = find_mpiexec()
            if mpiexec is None:
                raise BackendError(
                    f"local: a job of {tasks} tasks needs mpiexec, found neither next to "
                    f"{sys.executable} nor on PATH (install mpich, or submit with tasks=1)")
        rec = self.records / name
        try:
            rec.mkdir()
        except FileExistsError:
            raise BackendError(f"job name {name!r}: already used (record {rec})") from None
        write_record(
            rec / "spec.json",
            {"name": name, "argv": argv, "job_dir": str(job_dir), "tasks": tasks,
             "mpiexec": mpiexec, "t": time.time()},
        )
        try:
            with open(rec / "runner.log", "ab") as runner_log:
                proc = subprocess.Popen(
                    [sys.executable, "-m", "mummi_ml.backends._runner", str(rec)],
                    stdin=subprocess.DEVNULL,
                    stdout=runner_log,
                    stderr=runner_log,
                    start_new_session=True,  # survives the service; cancel signals the group
                    close_fds=True,
                )
        except OSError as exc:  # e.g. EAGAIN: too many processes
            raise BackendError(f"local: cannot start the runner of {name!r}: {exc}") from None
        self._procs[name] = proc
        write_record(
            rec / "launched.json", {"pid": proc.pid, "start_ticks": proc_start_ticks(proc.pid)}
        )
        return name

    def _info(self, name: str) -> JobInfo | None:
        rec = self.records / name
        if not rec.is_dir():
            return None
        end = _read_json(rec / "exit.json")
        if end is not None:
            return self._ended(name, end)
        started = _read_json(rec / "started.json")
        if started is not None:
            if _alive(int(started["pid"]), started.get("start_ticks")):
                return JobInfo(name, name, JobState.RUNNING)
            end = _read_json(rec / "exit.json")  # it may have ended between the two reads
            if end is not None:
                return self._ended(name, end)
            if (rec / "cancel").exists():
                return JobInfo(name, name, JobState.CANCELLED, None, "cancelled")
            return JobInfo(name, name, JobState.FAILED, None, "runner died without exit status")
        # The runner has not claimed the job (yet): it is starting, or it never will.
        launched = _read_json(rec / "launched.json")
        if launched is not None and _alive(int(launched["pid"]), launched.get("start_ticks")):
            return JobInfo(name, name, JobState.PENDING)
        if launched is None and time.time() - rec.stat().st_mtime < LAUNCH_GRACE_S:
            return JobInfo(name, name, JobState.PENDING)  # a submission may be under way
        # The runner died before its claim, or the submitter crashed before starting it.
        # Claim the job ourselves so that no late runner can start it, then record it lost.
        if not _claim(rec):
            return JobInfo(name, name, JobState.PENDING)  # a runner claimed it just now
        reason = "lost during submission (never started)"
        write_record(rec / "exit.json", {"exit_code": None, "lost": True, "reason": reason})
        return JobInfo(name, name, JobState.FAILED, None, reason)

    @staticmethod
    def _ended(name: str, end: dict) -> JobInfo:
        code = end.get("exit_code")
        code = int(code) if code is not None else None
        if end.get("cancelled"):
            return JobInfo(name, name, JobState.CANCELLED, code, end.get("reason") or "cancelled")
        if code == 0:
            return JobInfo(name, name, JobState.COMPLETED, 0)
        return JobInfo(name, name, JobState.FAILED, code, end.get("reason") or f"exit code {code}")

    def _reap(self) -> None:
        """Collect the exit status of every finished runner we started (no zombies pile up)."""
        for name, proc in list(self._procs.items()):
            if proc.poll() is not None:
                del self._procs[name]

    def _states(self, job_ids: list[str]) -> dict[str, JobInfo]:
        self._reap()
        out = {}
        for job_id in job_ids:
            info = self._info(job_id) if _safe_name(job_id) else None
            if info is not None:
                out[job_id] = info
        return out

    def _find(self, name: str) -> JobInfo | None:
        return self._info(name)

    def _cancel(self, job_id: str) -> None:
        if not _safe_name(job_id) or not (self.records / job_id).is_dir():
            raise BackendError(f"job id {job_id!r}: no such local job")
        rec = self.records / job_id
        # The marker first: a runner that claimed the job but is not yet ready for signals reads
        # it before it starts the command; one that is ready (started.json exists) gets SIGTERM.
        (rec / "cancel").touch()
        started = _read_json(rec / "started.json")
        if started is None:
            if _claim(rec):  # no runner will ever start it
                write_record(
                    rec / "exit.json", {"exit_code": None, "cancelled": True, "reason": "cancelled"}
                )
            return
        pid = int(started["pid"])
        if _alive(pid, started.get("start_ticks")):
            try:
                os.kill(pid, signal.SIGTERM)  # the runner forwards it; SIGKILL after a grace
            except ProcessLookupError:
                pass

    def close(self) -> None:
        self._reap()


def _claim(rec: Path) -> bool:
    """Take the job's one-time claim (``mkdir`` is atomic): True for the first caller only.

    The runner claims a job before it starts the command; the backend claims a job it declares
    lost or cancels before launch. Whoever is first decides, so a job never runs after it was
    reported lost (which would let a retry run the same work twice).
    """
    try:
        (rec / "claimed").mkdir()
    except FileExistsError:
        return False
    return True


def _safe_name(job_id: str) -> bool:
    """A local job id is a job name: no path separators, so it stays inside the records dir."""
    return bool(JOB_NAME_PATTERN.match(job_id))
