"""The whole configuration of a mummi-ml run: one section per part of the package.

``load_config("configs/quickstart.yaml", ["train.epochs=2"])`` returns a validated
:class:`Config`; each section's model lives in its sub-package (``mummi_ml.<part>.config``).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from pydantic import Field, ValidationError, model_validator

from mummi_ml.backends.config import JobsConfig
from mummi_ml.config_loader import (
    StrictModel,
    apply_overrides,
    load_yaml_model,
    model_to_yaml,
)
from mummi_ml.continuum.config import ContinuumConfig
from mummi_ml.errors import MummiMLError
from mummi_ml.evaluate.config import EvaluateConfig
from mummi_ml.metric.config import LossConfig, ModelConfig, TrainConfig
from mummi_ml.selector.config import SelectorConfig

__all__ = ["Config", "load_config", "dump_config"]


class Config(StrictModel):
    """Top-level configuration; every section has defaults, so an empty file is valid."""

    name: str = Field("mummi-ml", description="run name, used in logs and output metadata")
    continuum: ContinuumConfig = Field(default_factory=ContinuumConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    loss: LossConfig = Field(default_factory=LossConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    evaluate: EvaluateConfig = Field(default_factory=EvaluateConfig)
    selector: SelectorConfig = Field(default_factory=SelectorConfig)
    jobs: JobsConfig = Field(default_factory=JobsConfig)

    @model_validator(mode="after")
    def _retraining_is_runnable(self) -> Config:
        """The selector's retraining job is checked here, not only when it fails in its job:
        ``selector.retrain.train_overrides`` must apply to this config, and the retraining's
        ``train.batch_size`` must be a multiple of its ranks (``selector.retrain.tasks``)."""
        rc = self.selector.retrain
        if rc is None or not rc.submit:
            return self
        data = self.model_dump(mode="json")
        data["selector"]["retrain"] = None
        try:
            train = Config.model_validate(apply_overrides(data, rc.train_overrides)).train
        except ValidationError as exc:
            err = exc.errors()[0]
            where = ".".join(str(p) for p in err["loc"])
            raise ValueError(f"selector.retrain.train_overrides: {where}: {err['msg']}") from None
        except MummiMLError as exc:
            raise ValueError(f"selector.retrain.train_overrides: {exc}") from None
        tasks = rc.tasks or self.jobs.default_tasks
        if train.batch_size % tasks:
            raise ValueError(
                f"selector.retrain: the retraining's train.batch_size ({train.batch_size}) must "
                f"be a multiple of its {tasks} ranks (selector.retrain.tasks"
                + (", null: jobs.flux.num_tasks" if rc.tasks is None else "") + ")")
        return self


def load_config(path: str | Path | None = None, overrides: Iterable[str] = ()) -> Config:
    """Load a YAML config (None: defaults) with ``section.key=value`` overrides."""
    return load_yaml_model(Config, path, overrides)


def dump_config(cfg: Config) -> str:
    """The config as YAML text (loads back to an equal :class:`Config`)."""
    return model_to_yaml(cfg)
