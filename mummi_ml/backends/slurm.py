"""``slurm`` backend: ``sbatch --parsable``, ``squeue``/``sacct`` for states, ``scancel``.

The job's argv is never joined into a shell string: ``sbatch`` is given a constant two-line batch
script (``exec "$@"``, written once into the state directory) followed by the argv as separate
arguments. Jobs are found by name with ``squeue --name`` (which, with ``--states=all``, also lists
jobs that ended less than ``MinJobAge`` ago) and then ``sacct --name`` when accounting is enabled.

A job of ``tasks > 1`` is one allocation of ``sbatch --ntasks TASKS`` whose batch script runs
``srun --mpi=PLUGIN --ntasks TASKS --cpus-per-task C ARGV`` (``jobs.slurm.mpi``, default
``pmi2``): Slurm starts the ranks and gives them PMI, so an MPICH program (the mpich wheel's
mpi4py) sees ``COMM_WORLD`` of size TASKS; ``scancel`` stops the step with the job. (srun does not
take ``--cpus-per-task`` from the allocation since Slurm 22.05, so it is given again.) A job of one
task runs its argv directly in the batch script, as before. ``sbatch`` (which exports its
environment to the job) is run without the service's own MPI launch variables and without the
``SLURM_*``/``SRUN_*`` of the service's own job and step (but ``SLURM_CONF``, ``SLURM_CLUSTERS``):
the job's ``srun`` would read them as options (``SLURM_NTASKS``, ``SLURM_MEM_PER_CPU``, a CPU
mask, ...); Slurm sets the job's own (:func:`mummi_ml.backends.jobenv.sbatch_environment`).
"""

from __future__ import annotations

import logging
import shutil
import subprocess
from pathlib import Path

from mummi_ml.backends.base import (
    BackendError,
    BackendUnavailableError,
    JobBackend,
    JobInfo,
    JobState,
)
from mummi_ml.backends.config import JobsConfig
from mummi_ml.backends.jobenv import sbatch_environment
from mummi_ml.durable import atomic_path

__all__ = ["SlurmBackend", "slurm_state"]

log = logging.getLogger(__name__)

EXEC_SCRIPT = '#!/bin/sh\n# Written by mummi-ml: run the arguments as the job command.\nexec "$@"\n'

_PENDING = {
    "PENDING",
    "CONFIGURING",
    "REQUEUED",
    "REQUEUE_HOLD",
    "REQUEUE_FED",
    "RESIZING",
    "SUSPENDED",
    "STOPPED",
    "RESV_DEL_HOLD",
    "SIGNALING",
    "STAGE_OUT",
}
_RUNNING = {"RUNNING", "COMPLETING"}


def slurm_state(text: str) -> JobState:
    """Map a Slurm state name (``squeue %T`` / ``sacct State``) to a :class:`JobState`.

    ``"CANCELLED by 0"`` (sacct) counts as cancelled; every other end (FAILED, TIMEOUT,
    NODE_FAIL, OUT_OF_MEMORY, BOOT_FAIL, DEADLINE, PREEMPTED) as failed.
    """
    word = text.strip().split(" ")[0].rstrip("+").upper()
    if word in _PENDING:
        return JobState.PENDING
    if word in _RUNNING:
        return JobState.RUNNING
    if word == "COMPLETED":
        return JobState.COMPLETED
    if word == "CANCELLED":
        return JobState.CANCELLED
    return JobState.FAILED


def _wait_status(raw: str) -> int | None:
    """squeue's ``exit_code`` is a raw wait status: exit code << 8, or the signal number."""
    try:
        status = int(raw)
    except ValueError:
        return None
    return -(status & 0x7F) if status & 0x7F else status >> 8


class SlurmBackend(JobBackend):
    """Jobs submitted with ``sbatch`` to the Slurm cluster this machine belongs to."""

    name = "slurm"

    def __init__(self, cfg: JobsConfig, state_dir: Path):
        super().__init__(cfg, state_dir)
        reason = self.unavailable_reason()
        if reason:
            raise BackendUnavailableError(f"slurm backend: {reason}")
        self.opts = cfg.slurm
        script_dir = self.state_dir / "slurm"
        script_dir.mkdir(parents=True, exist_ok=True)
        self.script = script_dir / "exec.sh"
        if not self.script.exists() or self.script.read_text() != EXEC_SCRIPT:
            with atomic_path(self.script, fsync=False) as tmp:
                tmp.write_text(EXEC_SCRIPT)
                tmp.chmod(0o755)
        self._accounting = True  # until sacct says it is disabled

    @classmethod
    def unavailable_reason(cls) -> str | None:
        missing = [c for c in ("sbatch", "squeue", "scancel") if shutil.which(c) is None]
        if missing:
            return f"{', '.join(missing)} not found on PATH (Slurm client tools not installed)"
        try:
            proc = subprocess.run(
                ["sinfo", "-h", "-o", "%a"], capture_output=True, text=True, timeout=15
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            return f"sinfo failed: {exc}"
        if proc.returncode != 0 or not proc.stdout.strip():
            err = (proc.stderr.strip().splitlines() or ["no partition"])[-1]
            return f"Slurm controller not reachable (sinfo: {err})"
        return None

    # ---- command runner --------------------------------------------------------------------------

    def _run(self, argv: list[str], check: bool = True,
             env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
        try:
            proc = subprocess.run(
                argv, capture_output=True, text=True, timeout=self.opts.command_timeout_s,
                env=env,
            )
        except subprocess.TimeoutExpired:
            raise BackendError(
                f"slurm: {argv[0]} did not answer within {self.opts.command_timeout_s} s"
            ) from None
        except OSError as exc:
            raise BackendError(f"slurm: cannot run {argv[0]}: {exc}") from None
        if check and proc.returncode != 0:
            err = (proc.stderr.strip().splitlines() or [f"exit status {proc.returncode}"])[-1]
            raise BackendError(f"slurm: {argv[0]} failed: {err}")
        return proc

    # ---- hooks -------------------------------------------------------------------------------

    def _submit(self, name: str, argv: list[str], job_dir: Path, tasks: int) -> str:
        if "%" in str(job_dir):
            raise BackendError(f"job_dir: '%' is a Slurm filename pattern, got {job_dir}")
        cmd = [
            "sbatch", "--parsable", "--job-name", name, "--chdir", str(job_dir),
            "--output", str(job_dir / f"{name}.out"), "--error", str(job_dir / f"{name}.err"),
            "--ntasks", str(tasks), "--cpus-per-task", str(self.opts.cpus_per_task),
        ]  # fmt: skip
        if self.opts.partition:
            cmd += ["--partition", self.opts.partition]
        if self.opts.time_limit:
            cmd += ["--time", self.opts.time_limit]
        if tasks > 1:  # the ranks: one srun step of the whole allocation
            argv = ["srun", f"--mpi={self.opts.mpi}", "--ntasks", str(tasks),
                    "--cpus-per-task", str(self.opts.cpus_per_task), *argv]
        cmd += [*self.opts.extra_args, str(self.script), *argv]
        out = self._run(cmd, env=sbatch_environment()).stdout.strip()  # sbatch exports it
        job_id = out.split(";")[0].strip()
        if not job_id.isdigit():
            raise BackendError(f"slurm: sbatch --parsable printed {out!r}, expected a job id")
        return job_id

    def _squeue(self, selector: list[str]) -> list[JobInfo]:
        proc = self._run(
            ["squeue", "--states=all", "-h", *selector, "-O", "JobID:|,Name:|,State:|,exit_code:"],
            check=False,
        )
        if proc.returncode != 0:
            if "Invalid job id" in proc.stderr:
                return []
            err = (proc.stderr.strip().splitlines() or [f"exit status {proc.returncode}"])[-1]
            raise BackendError(f"slurm: squeue failed: {err}")
        infos = []
        for line in proc.stdout.splitlines():
            parts = line.strip().split("|")
            if len(parts) < 4:
                continue
            job_id, name, state, code = (p.strip() for p in parts[:4])
            st = slurm_state(state)
            exit_code = _wait_status(code) if st.is_terminal else None
            reason = "" if st in (JobState.COMPLETED, JobState.PENDING, JobState.RUNNING) else state
            infos.append(JobInfo(name, job_id, st, exit_code, reason))
        return infos

    def _sacct(self, selector: list[str]) -> list[JobInfo]:
        if not self._accounting or shutil.which("sacct") is None:
            return []
        proc = self._run(
            ["sacct", "-n", "-P", "-X", "-S", "now-30days", *selector,
             "--format", "JobID,JobName,State,ExitCode"],
            check=False,
        )  # fmt: skip
        if proc.returncode != 0:
            if "accounting storage is disabled" in (proc.stderr + proc.stdout):
                self._accounting = False
                log.info("slurm: accounting disabled; states of old jobs come from squeue only")
            return []
        infos = []
        for line in proc.stdout.splitlines():
            parts = line.split("|")
            if len(parts) < 4 or not parts[0].strip().split("_")[0].isdigit():
                continue
            st = slurm_state(parts[2])
            code = parts[3].split(":")[0]
            exit_code = int(code) if code.isdigit() and st.is_terminal else None
            reason = (
                "" if st in (JobState.COMPLETED, JobState.PENDING, JobState.RUNNING) else parts[2]
            )
            infos.append(JobInfo(parts[1], parts[0], st, exit_code, reason))
        return infos

    def _states(self, job_ids: list[str]) -> dict[str, JobInfo]:
        bad = [j for j in job_ids if not j.isdigit()]
        if bad:
            raise BackendError(f"slurm: job id must be a number, got {bad[0]!r}")
        found = {i.job_id: i for i in self._squeue(["-j", ",".join(job_ids)])}
        missing = [j for j in job_ids if j not in found]
        if missing and len(job_ids) > 1 and len(found) == 0:
            # squeue rejects the whole list when none is known; ask one by one
            for j in missing:
                found.update({i.job_id: i for i in self._squeue(["-j", j])})
            missing = [j for j in job_ids if j not in found]
        if missing:
            found.update({i.job_id: i for i in self._sacct(["-j", ",".join(missing)])})
        return found

    def _find(self, name: str) -> JobInfo | None:
        infos = self._squeue(["--name", name]) or self._sacct(["--name", name])
        infos = [i for i in infos if i.name == name]
        if not infos:
            return None
        return max(infos, key=lambda i: int(i.job_id.split("_")[0]))

    def _cancel(self, job_id: str) -> None:
        if not job_id.isdigit():
            raise BackendError(f"slurm: job id must be a number, got {job_id!r}")
        self._run(["scancel", job_id])
