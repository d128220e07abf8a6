"""Configuration of MD job emission (``jobs:``).

The command of an MD job is an argv *template*: a list of strings, each formatted on its own with
the placeholders of :data:`COMMAND_PLACEHOLDERS`. No shell ever sees it, so a value can never be
read as shell syntax. Unknown placeholders, attribute/index access (``{job_dir.x}``), conversions
and format specs are rejected when the config is loaded.
"""

from __future__ import annotations

import re
import string
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from mummi_ml.config_loader import StrictModel

__all__ = [
    "JobsConfig",
    "SlurmOptions",
    "FluxOptions",
    "FLUX_RESERVED_ATTRIBUTES",
    "fsd_seconds",
    "HandoffOptions",
    "COMMAND_PLACEHOLDERS",
    "DEFAULT_COMMAND",
    "template_fields",
]

#: Placeholders allowed in ``jobs.command``: the job directory (absolute path), the patch file in
#: it (absolute path of ``patch.h5``), the patch id (decimal), the Python running mummi-ml, and
#: ``jobs.duration_us`` (simulated time of one job, us).
COMMAND_PLACEHOLDERS: tuple[str, ...] = (
    "job_dir",
    "patch_file",
    "patch_id",
    "python",
    "duration_us",
)

#: The default MD stand-in: evolve the patch with the continuum dynamics (``mummi-ml relax``).
DEFAULT_COMMAND: tuple[str, ...] = (
    "{python}", "-m", "mummi_ml", "relax", "{job_dir}", "--duration-us", "{duration_us}",
)  # fmt: skip


def template_fields(element: str) -> list[str]:
    """The placeholder names used in one argv element; raises ValueError for bad syntax.

    ``"--in={patch_file}"`` gives ``["patch_file"]``; ``"{{literal}}"`` gives ``[]``.
    """
    names = []
    for _text, field, spec, conv in string.Formatter().parse(element):
        if field is None:
            continue
        if spec or conv:
            raise ValueError(
                f"placeholder {{{field}}} in {element!r}: no conversion or format spec"
            )
        names.append(field)
    return names


class SlurmOptions(StrictModel):
    """Options of the ``slurm`` backend (passed to ``sbatch`` as separate arguments)."""

    partition: str | None = Field(None, description="sbatch --partition; None: the default one")
    time_limit: str | None = Field(
        None, description="sbatch --time (Slurm syntax, e.g. '02:00:00'); None: partition limit"
    )
    cpus_per_task: int = Field(1, ge=1, description="sbatch --cpus-per-task (CPU cores per job)")
    extra_args: list[str] = Field(
        default_factory=list,
        description="more sbatch arguments, one per element (e.g. ['--account=abc', '--gpus=1'])",
    )
    command_timeout_s: float = Field(
        30.0, gt=0, description="timeout of one sbatch/squeue/sacct/scancel call (s)"
    )
    mpi: str = Field(
        "pmi2",
        pattern=r"^[A-Za-z0-9_.-]+$",
        description="srun --mpi plugin that starts the ranks of a job of several tasks (one "
        "MPI program; `srun --mpi=list` shows the cluster's): pmi2 suits MPICH (the mpich wheel), "
        "pmix an MPI built with PMIx",
    )


#: Flux Standard Duration (RFC 23): a number with an optional unit ms, s, m, h or d.
_FSD = re.compile(r"^(?:\d+(?:\.\d*)?|\.\d+)(?:ms|s|m|h|d)?$")
_FSD_SECONDS = {"ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}

#: Jobspec attributes the flux backend sets itself, and the option that sets each.
FLUX_RESERVED_ATTRIBUTES: dict[str, str] = {
    "system.job.name": "jobs.name_prefix (the emitter names jobs)",
    "system.duration": "jobs.flux.time_limit",
    "system.queue": "jobs.flux.queue",
    "system.bank": "jobs.flux.bank",
    "system.cwd": "the job directory",
    "system.environment": "the service's environment",
    "system.shell.options.output": "the job directory's <name>.out/.err",
}


def fsd_seconds(text: str) -> float:
    """Seconds of a Flux Standard Duration (``"90"``, ``"30s"``, ``"10m"``, ``"2h"``, ``"1d"``,
    ``"500ms"``; a bare number is seconds). Raises ValueError for anything else."""
    if not isinstance(text, str) or not _FSD.match(text.strip()):
        raise ValueError("expected a Flux duration such as '90', '30s', '10m', '2h' or '1d'")
    text = text.strip()
    unit = next((u for u in ("ms", "s", "m", "h", "d") if text.endswith(u)), "")
    return float(text[: len(text) - len(unit)]) * _FSD_SECONDS.get(unit, 1.0)


class FluxOptions(StrictModel):
    """Options of the ``flux`` backend: the jobspec of every MD job (``flux submit`` terms)."""

    uri: str | None = Field(None, description="Flux instance URI; None: the enclosing instance")
    num_tasks: int = Field(1, ge=1, description="tasks per job (flux submit -n)")
    cores_per_task: int = Field(1, ge=1, description="cores per task (flux submit -c)")
    gpus_per_task: int = Field(0, ge=0, description="GPUs per task (flux submit -g)")
    nodes: int | None = Field(
        None, ge=1, description="nodes per job (flux submit -N; at most num_tasks); None: any"
    )
    exclusive: bool = Field(
        False, description="whole nodes for each job (flux submit --exclusive; needs nodes)"
    )
    time_limit: str | None = Field(
        None,
        description="time limit of one job (flux submit -t), Flux Standard Duration: '90' "
        "(s), '30s', '10m', '2h', '1d'; a job past it is killed and recorded failed "
        "('Timeout'); None: unlimited (the instance's limit)",
    )
    queue: str | None = Field(None, description="flux submit --queue; None: the default queue")
    bank: str | None = Field(
        None, description="flux submit --bank (flux-accounting); None: the user's default bank"
    )
    urgency: int = Field(
        16, ge=0, le=31,
        description="flux submit --urgency: 0 (held) to 31 (expedite; instance owner only); "
        "16 is Flux's default",
    )
    extra_attributes: dict[str, Any] = Field(
        default_factory=dict,
        description="more jobspec attributes, as `flux submit --setattr KEY=VALUE`: keys "
        "'system.<...>' or 'user.<...>', values any YAML value, e.g. "
        "{'system.shell.options.cpu-affinity': 'per-task', 'user.project': 'ras'}",
    )

    @field_validator("time_limit")
    @classmethod
    def _valid_duration(cls, value: str | None) -> str | None:
        if value is not None and fsd_seconds(value) <= 0:
            raise ValueError("must be longer than 0 s")
        return value

    @field_validator("queue", "bank")
    @classmethod
    def _non_empty(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            raise ValueError("must not be empty (null: Flux's default)")
        return value

    @field_validator("extra_attributes")
    @classmethod
    def _valid_attributes(cls, attrs: dict[str, Any]) -> dict[str, Any]:
        for key in attrs:
            if not re.match(r"^(system|user)\.[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$", key):
                raise ValueError(
                    f"key {key!r}: expected 'system.<name>' or 'user.<name>' (dotted, as "
                    "flux submit --setattr)"
                )
            for reserved, owner in FLUX_RESERVED_ATTRIBUTES.items():
                if key == reserved or key.startswith(reserved + "."):
                    raise ValueError(f"key {key!r} is set by the backend: use {owner}")
        return attrs

    @model_validator(mode="after")
    def _valid_nodes(self) -> FluxOptions:
        if self.exclusive and self.nodes is None:
            raise ValueError("exclusive: true needs nodes (flux submit --exclusive needs -N)")
        if self.nodes is not None and self.nodes > self.num_tasks:
            raise ValueError(
                f"nodes ({self.nodes}) must not exceed num_tasks ({self.num_tasks})"
            )
        return self


class HandoffOptions(StrictModel):
    """Options of the ``handoff`` backend (picks handed to a workflow manager)."""

    dir: str = Field(
        "handoff",
        description="handoff directory (outbox/, taken/, ack/, cancel/); relative paths are "
        "under the service's state directory",
    )


class JobsConfig(StrictModel):
    """MD job emission: which backend, how many jobs at once, what each job runs."""

    backend: Literal["local", "slurm", "flux", "handoff"] = Field(
        "local",
        description="job backend: local subprocesses, Slurm (sbatch), Flux (flux-python), or "
        "handoff (picks handed to a workflow manager that launches them and acknowledges)",
    )
    slots: int = Field(2, ge=1, description="MD jobs running at once (MD capacity, jobs)")
    command: list[str] = Field(
        default_factory=lambda: list(DEFAULT_COMMAND),
        min_length=1,
        description="argv template of one MD job; placeholders {job_dir}, {patch_file}, "
        "{patch_id}, {python}, {duration_us}; each element formatted separately, never run "
        "through a shell",
    )
    max_retries: int = Field(
        2, ge=0, description="resubmissions of a failed job before it is recorded failed (count)"
    )
    jobs_root: str = Field(
        "jobs",
        description="directory of the job directories (<jobs_root>/<patch id>/); "
        "relative paths are under the service's state directory",
    )
    name_prefix: str = Field(
        "mummi-",
        pattern=r"^[A-Za-z][A-Za-z0-9_.-]{0,31}$",
        description="prefix of scheduler job names (<prefix><tag>-<patch id>-<attempt>; "
        "tag: 6 hex digits from the state directory)",
    )
    poll_interval_s: float = Field(
        1.0, gt=0, description="seconds between state queries while waiting for jobs (s)"
    )
    duration_us: float = Field(
        1.0,
        ge=0,
        description="simulated time of one MD job (us): the {duration_us} placeholder; the "
        "default command passes it to `mummi-ml relax --duration-us`",
    )
    relax_seed: int | None = Field(
        None, ge=0, lt=2**63,
        description="seed of `mummi-ml relax`; None: derived from the patch id",
    )
    slurm: SlurmOptions = Field(default_factory=SlurmOptions, description="slurm backend options")
    flux: FluxOptions = Field(default_factory=FluxOptions, description="flux backend options")
    handoff: HandoffOptions = Field(
        default_factory=HandoffOptions, description="handoff backend options"
    )

    @property
    def default_tasks(self) -> int:
        """Processes of a job submitted without a task count: ``flux.num_tasks`` with the flux
        backend, 1 with the others."""
        return self.flux.num_tasks if self.backend == "flux" else 1

    @field_validator("command")
    @classmethod
    def _known_placeholders(cls, command: list[str]) -> list[str]:
        for element in command:
            try:
                names = template_fields(element)
            except ValueError as exc:
                raise ValueError(f"jobs.command element {element!r}: {exc}") from None
            for name in names:
                if name not in COMMAND_PLACEHOLDERS:
                    raise ValueError(
                        f"jobs.command element {element!r}: unknown placeholder {{{name}}}; "
                        f"expected one of {', '.join('{' + p + '}' for p in COMMAND_PLACEHOLDERS)}"
                    )
        if not command[0].strip():
            raise ValueError("jobs.command[0] (the program) is empty")
        return command
