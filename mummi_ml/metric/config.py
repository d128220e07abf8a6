"""Configuration of the metric model, its losses and its training (``model:`` and ``train:``)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from mummi_ml.config_loader import StrictModel

__all__ = ["ModelConfig", "LossConfig", "TrainConfig"]


class ModelConfig(StrictModel):
    """The encoder (paper appendix A.2) and the features it is trained against."""

    latent_dim: int = Field(9, ge=1, le=1024, description="dimension d of the metric space z")
    profile_channels: list[int] = Field(
        default_factory=lambda: list(range(8)),
        description="lipid channel indices used for the radial profiles Upsilon (0-13)",
    )
    transform_group: Literal["paper", "dihedral"] = Field(
        "paper",
        description="invariance group: 'paper' = 3 rotations + 2 axis reflections; "
        "'dihedral' adds the two diagonal reflections",
    )


class LossConfig(StrictModel):
    """Weights and margins of L = w_inv L_inv + w_rad L_rad + w_lab L_lab (units of d_z)."""

    w_inv: float = Field(2.0, ge=0, description="weight of the invariance loss")
    alpha_inv: float = Field(1.0, ge=0, description="margin of the invariance triplet loss")
    w_rad: float = Field(2.0, ge=0, description="weight of the radial-profile proportionality loss")
    lambda_rad: float = Field(0.1, gt=0, description="proportionality d_z ~ lambda d_Upsilon")
    w_lab: float = Field(1.0, ge=0, description="weight of the class-label triplet loss")
    alpha_lab: float = Field(8.0, ge=0, description="margin of the label triplet loss")
    label_mining: Literal["batch_hard", "batch_all"] = Field(
        "batch_hard", description="triplet mining of the label loss"
    )

    @model_validator(mode="after")
    def _some_loss(self) -> LossConfig:
        if self.w_inv == 0 and self.w_rad == 0 and self.w_lab == 0:
            raise ValueError("at least one of w_inv, w_rad, w_lab must be > 0")
        return self


class TrainConfig(StrictModel):
    """Optimisation: Adam with a piecewise-constant learning rate."""

    epochs: int = Field(60, ge=1, description="training epochs")
    batch_size: int = Field(128, ge=2, description="global batch size (patches, before augmentation)")
    learning_rates: list[float] = Field(
        default_factory=lambda: [1e-3, 5e-3, 1e-4, 1e-5],
        description="piecewise-constant learning rates",
    )
    lr_boundaries: list[int] = Field(
        default_factory=lambda: [10, 20, 30],
        description="epochs after which the learning rate switches to the next value",
    )
    validation_fraction: float = Field(0.1, gt=0, lt=1, description="fraction held out")
    split_by: Literal["patch", "replica"] = Field("patch", description="unit of the train/val split")
    seed: int = Field(0, description="seed of every random generator of the run")
    num_threads: int = Field(0, ge=0, description="torch CPU threads per rank (0: leave default)")

    @model_validator(mode="after")
    def _schedule(self) -> TrainConfig:
        if len(self.learning_rates) != len(self.lr_boundaries) + 1:
            raise ValueError(
                f"learning_rates needs one more value than lr_boundaries "
                f"(got {len(self.learning_rates)} and {len(self.lr_boundaries)})"
            )
        if any(b2 <= b1 for b1, b2 in zip(self.lr_boundaries, self.lr_boundaries[1:])):
            raise ValueError(f"lr_boundaries must increase (got {self.lr_boundaries})")
        return self
