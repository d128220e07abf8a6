"""The whole configuration of a mummi-ml run: one section per part of the package.

``load_config("configs/quickstart.yaml", ["train.epochs=2"])`` returns a validated
:class:`Config`; each section's model lives in its sub-package (``mummi_ml.<part>.config``).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from pydantic import Field

from mummi_ml.backends.config import JobsConfig
from mummi_ml.config_loader import StrictModel, load_yaml_model, model_to_yaml
from mummi_ml.continuum.config import ContinuumConfig
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


def load_config(path: str | Path | None = None, overrides: Iterable[str] = ()) -> Config:
    """Load a YAML config (None: defaults) with ``section.key=value`` overrides."""
    return load_yaml_model(Config, path, overrides)


def dump_config(cfg: Config) -> str:
    """The config as YAML text (loads back to an equal :class:`Config`)."""
    return model_to_yaml(cfg)
