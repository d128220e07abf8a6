"""Configuration of MD job emission (``jobs:``).

The command of an MD job is an argv *template*: a list of strings, each formatted on its own with
the placeholders of :data:`COMMAND_PLACEHOLDERS`. No shell ever sees it, so a value can never be
read as shell syntax. Unknown placeholders, attribute/index access (``{job_dir.x}``), conversions
and format specs are rejected when the config is loaded.
"""

from __future__ import annotations

import string
from typing import Literal

from pydantic import Field, field_validator

from mummi_ml.config_loader import StrictModel

__all__ = [
    "JobsConfig",
    "SlurmOptions",
    "FluxOptions",
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


class FluxOptions(StrictModel):
    """Options of the ``flux`` backend (jobspec resources)."""

    uri: str | None = Field(None, description="Flux instance URI; None: the enclosing instance")
    num_tasks: int = Field(1, ge=1, description="tasks per job")
    cores_per_task: int = Field(1, ge=1, description="cores per task")
    gpus_per_task: int = Field(0, ge=0, description="GPUs per task")


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
        None, description="seed of `mummi-ml relax`; None: derived from the patch id"
    )
    slurm: SlurmOptions = Field(default_factory=SlurmOptions, description="slurm backend options")
    flux: FluxOptions = Field(default_factory=FluxOptions, description="flux backend options")
    handoff: HandoffOptions = Field(
        default_factory=HandoffOptions, description="handoff backend options"
    )

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
