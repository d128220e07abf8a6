"""``selector.retrain``: the retraining reservoir, its snapshot triggers and the retraining job
(:mod:`mummi_ml.selector.loop`).

A module of its own so that loading a config does not import numpy-heavy code."""

from __future__ import annotations

from pydantic import Field, model_validator

from mummi_ml.config_loader import StrictModel

__all__ = ["RetrainConfig", "RETRAIN_FILE"]

RETRAIN_FILE = "RETRAIN"
"""``STATE_DIR/RETRAIN``: an operator's request for a training snapshot (and a retraining job when
``submit`` is set); the service consumes (deletes) it at its next synchronisation point."""


class RetrainConfig(StrictModel):
    """``selector.retrain``: what the selector keeps for retraining, when it writes snapshots."""

    reservoir_per_class: int = Field(
        250, ge=1, description="accepted arrivals kept per class in the reservoir sample (count; "
        "memory and pinned payload segments grow with it)")
    on_drift: bool = Field(True, description="write a snapshot when the drift monitor emits an "
                           "event")
    after_drift_arrivals: int = Field(
        0, ge=0, description="write the drift event's snapshot only once this many more "
        "arrivals have been accepted after the event (count; 0: at once), so that the "
        "retraining sees the drifted stream, not just the windows that revealed it")
    every_picks: int | None = Field(
        None, ge=1, description="write a snapshot every this many picks (null: no schedule)")
    every_arrivals: int | None = Field(
        None, ge=1, description="write a snapshot every this many accepted arrivals (null: no "
        "schedule)")
    submit: bool = Field(
        False, description="submit `mummi-ml train --init-from MODEL` on each snapshot through "
        "the jobs backend; the model goes to selector.model_updates_dir/<name>")
    tasks: int | None = Field(
        None, ge=1, description="ranks of the retraining job (count): `mummi-ml train` runs "
        "data-parallel as one MPI program of this many ranks, launched by the jobs backend "
        "(local: mpiexec -n; slurm: sbatch --ntasks + srun; flux: the jobspec's tasks; handoff: "
        "the record's tasks); train.batch_size must be a multiple of it. null: the backend's "
        "per-job task count (jobs.flux.num_tasks with flux, 1 otherwise)")
    train_overrides: list[str] = Field(
        default_factory=list, description="`section.key=value` overrides given to the "
        "retraining (`--set`), e.g. train.finetune_epochs=2")

    @model_validator(mode="after")
    def _delay_needs_drift(self) -> RetrainConfig:
        if self.after_drift_arrivals and not self.on_drift:
            raise ValueError("after_drift_arrivals delays the drift event's snapshot: it needs "
                             "on_drift: true")
        return self
