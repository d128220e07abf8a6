"""Configuration of metric evaluation (``evaluate:``)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from mummi_ml.config_loader import StrictModel
from mummi_ml.metric.config import LOSS_TERMS

__all__ = ["EvaluateConfig", "SweepConfig", "SWEEP_PARAMETERS"]

#: config keys a sweep may vary (dotted: section.field): the latent dimension, each loss term's
#: weight and margin/scale, epochs and batch size
SWEEP_PARAMETERS: tuple[str, ...] = (
    "model.latent_dim",
    *(f"loss.{key}" for term in LOSS_TERMS for key in (term.weight, term.parameter)),
    "train.epochs",
    "train.batch_size",
)


class SweepConfig(StrictModel):
    """Hyperparameter sweep and ablations (``mummi-ml sweep``): which models to train, how many
    points to evaluate each on, and the model-selection rule's weight of dimensionality."""

    mode: Literal["grid", "random"] = Field(
        "grid", description="'grid': every combination of the values; 'random': n_samples of them"
    )
    n_samples: int = Field(8, ge=1, description="combinations drawn in random mode (count)")
    seed: int = Field(0, ge=0, lt=2**63, description="seed of the random draw")
    parameters: dict[str, list[int | float]] = Field(
        default_factory=dict,
        description="values to try per dotted config key, e.g. {'model.latent_dim': [5, 9, 16], "
        "'loss.lambda_rad': [0.05, 0.1]}; keys: " + ", ".join(SWEEP_PARAMETERS),
    )
    ablations: bool = Field(
        True,
        description="also train the base config with each loss alone and each pair of losses "
        "(the other weights set to 0)",
    )
    eval_points: int = Field(
        2000, ge=2, description="held-out patches each model is evaluated on (count)"
    )
    dim_weight: float = Field(
        0.5,
        ge=0,
        description="weight of the latent dimension in the selection score "
        "(overlap, MARE* and AUC weigh 1 each)",
    )

    @field_validator("parameters")
    @classmethod
    def _known_keys(cls, v: dict[str, list[int | float]]) -> dict[str, list[int | float]]:
        for key, values in v.items():
            if key not in SWEEP_PARAMETERS:
                raise ValueError(
                    f"unknown sweep parameter {key!r}; expected one of "
                    f"{', '.join(SWEEP_PARAMETERS)}"
                )
            if not values:
                raise ValueError(f"sweep parameter {key!r}: expected at least one value")
        return v


class EvaluateConfig(StrictModel):
    """Evaluation (``mummi-ml evaluate``): criteria on a held-out set, baselines, figures."""

    n_points: int = Field(
        30000, ge=2, description="held-out patches evaluated (count; paper: 30,000)"
    )
    seed: int = Field(
        0, ge=0, lt=2**32, description="seed of the evaluation subset and of t-SNE"
    )
    baselines: bool = Field(
        True, description="also evaluate l2 on images, on mean concentrations mu and on Upsilon"
    )
    images_max_points: int = Field(
        4000,
        ge=2,
        description="points for the 19,166-D image baseline (count; all-pairs cost grows as "
        "N^2 x 19,166): the first this many of the evaluation subset",
    )
    transform_group: Literal["model", "paper", "dihedral"] = Field(
        "model",
        description="transformations of the overlap criterion: the model's own group, the "
        "paper's 5, or the 7 non-identity dihedral elements",
    )
    tsne_points: int = Field(2000, ge=10, description="points drawn in the t-SNE figure (count)")
    histogram_bins: int = Field(
        200, ge=10, description="bins per axis of the all-pairs histograms (count)"
    )
    diffusion_nm2_per_us: float = Field(
        43.36, gt=0, description="lipid diffusivity D of the decorrelation estimate (nm^2/us)"
    )
    patch_length_nm: float = Field(
        30.0, gt=0, description="patch side L of the decorrelation estimate L^2/(D (2 pi)^2) (nm)"
    )
    space_frames: int = Field(
        40, ge=1, description="frames (same replica and time) used for d_z vs centre distance"
    )
    space_bin_nm: float = Field(2.0, gt=0, description="bin width of centre distances (nm)")
    device: str | None = Field(
        None, description="torch device of the criteria (default: cuda if present, else cpu)"
    )
    sweep: SweepConfig = Field(default_factory=SweepConfig, description="mummi-ml sweep")
