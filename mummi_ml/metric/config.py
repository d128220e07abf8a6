"""Configuration of the metric model, its losses and its training (``model:``, ``loss:``,
``train:``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Literal

from pydantic import Field, model_validator

from mummi_ml.config_loader import StrictModel

__all__ = ["ModelConfig", "LossConfig", "TrainConfig", "LossTerm", "LOSS_TERMS"]


@dataclass(frozen=True)
class LossTerm:
    """One term of the metric's loss, named once for training, sweeps and reports.

    Attributes:
        name: label in tables and ablation names, e.g. ``"L_rad"``.
        weight: its weight's field of :class:`LossConfig`, e.g. ``"w_rad"`` (0 = not trained).
        parameter: its margin or scale field of :class:`LossConfig`, e.g. ``"lambda_rad"``.
    """

    name: str
    weight: str
    parameter: str


#: the three terms of L = w_inv L_inv + w_rad L_rad + w_lab L_lab, in that order
LOSS_TERMS: tuple[LossTerm, ...] = (
    LossTerm("L_inv", "w_inv", "alpha_inv"),
    LossTerm("L_rad", "w_rad", "lambda_rad"),
    LossTerm("L_lab", "w_lab", "alpha_lab"),
)


class ModelConfig(StrictModel):
    """The encoder (paper appendix A.2) and the features it is trained against."""

    latent_dim: int = Field(9, ge=1, le=1024, description="dimension d of the metric space z")
    profile_channels: list[Annotated[int, Field(ge=0, le=13)]] = Field(
        default_factory=lambda: list(range(8)),
        min_length=1,
        description="lipid channel indices used for the radial profiles Upsilon (0-13)",
    )
    transform_group: Literal["paper", "dihedral"] = Field(
        "paper",
        description="invariance group: 'paper' = 3 rotations + 2 axis reflections; "
        "'dihedral' adds the two diagonal reflections",
    )
    invariance: Literal["learned", "group"] = Field(
        "learned",
        description="'learned': the paper's encoder, invariance to the transformations learned "
        "by L_inv; 'group': the mean over the 8 rotations/reflections of D4 of the encoder's "
        "Dense output (before the last BatchNorm), invariant by construction "
        "(d_z(x, rho(x)) = 0 up to rounding; L_inv may then have weight 0; ~8x the "
        "convolution work per patch)",
    )
    depth_multiplier: int = Field(
        6, ge=1, description="outputs per lipid channel of the depthwise 1x1 convolution (paper: 6)"
    )
    sep_filters: int = Field(6, ge=1, description="filters of the separable convolution (paper: 6)")
    conv_filters: int = Field(
        16, ge=1, description="filters of each strided 3x3 convolution (paper: 16)"
    )
    bn_momentum: float = Field(
        0.1,
        gt=0,
        le=1,
        description="BatchNorm running-average weight of a new batch, torch convention "
        "(Keras' default momentum 0.99 is 0.01 here; 0.1 settles the eval-mode statistics "
        "within a few dozen steps, which short runs need; training itself is unaffected)",
    )
    bn_eps: float = Field(1e-3, gt=0, description="BatchNorm epsilon (Keras default 1e-3)")


class LossConfig(StrictModel):
    """Weights and margins of L = w_inv L_inv + w_rad L_rad + w_lab L_lab (units of d_z).

    A term whose weight is 0 is not computed (ablations)."""

    w_inv: float = Field(2.0, ge=0, description="weight of the invariance loss (dimensionless)")
    alpha_inv: float = Field(1.0, ge=0, description="margin of the invariance triplet loss (d_z)")
    w_rad: float = Field(
        2.0, ge=0, description="weight of the radial-profile proportionality loss (dimensionless)"
    )
    lambda_rad: float = Field(
        0.1, gt=0, description="proportionality d_z ~ lambda d_Upsilon (d_z per unit of d_Upsilon)"
    )
    w_lab: float = Field(1.0, ge=0, description="weight of the class-label triplet loss")
    alpha_lab: float = Field(8.0, ge=0, description="margin of the label triplet loss (d_z)")
    label_mining: Literal["batch_hard", "batch_all"] = Field(
        "batch_hard",
        description="triplet mining of the label loss: hardest positive/negative per anchor, "
        "or the mean over all valid triplets",
    )

    @model_validator(mode="after")
    def _some_loss(self) -> LossConfig:
        if not self.active_terms():
            raise ValueError(
                f"at least one of {', '.join(t.weight for t in LOSS_TERMS)} must be > 0"
            )
        return self

    def active_terms(self) -> tuple[LossTerm, ...]:
        """The terms trained with a weight > 0 (in :data:`LOSS_TERMS` order)."""
        return tuple(t for t in LOSS_TERMS if getattr(self, t.weight) > 0)


class TrainConfig(StrictModel):
    """Optimisation: Adam with a piecewise-constant learning rate, data split and pipeline."""

    epochs: int = Field(60, ge=1, description="training epochs")
    batch_size: int = Field(
        128,
        ge=2,
        description="GLOBAL batch size (patches, before augmentation), split evenly over ranks; "
        "must be a multiple of the number of ranks",
    )
    learning_rates: list[float] = Field(
        default_factory=lambda: [1e-3, 5e-3, 1e-4, 1e-5],
        description="piecewise-constant learning rates (per step of the global batch)",
    )
    lr_boundaries: list[int] = Field(
        default_factory=lambda: [10, 20, 30],
        description="epochs after which the learning rate switches to the next value",
    )
    validation_fraction: float = Field(
        0.1, gt=0, lt=1, description="fraction held out for validation (of patches or replicas)"
    )
    split_by: Literal["patch", "replica"] = Field(
        "patch", description="unit of the train/val split: single patches or whole replicas"
    )
    seed: int = Field(
        0, ge=0, lt=2**63, description="seed of every random generator of the run"
    )
    num_threads: int = Field(
        0, ge=0, description="torch CPU threads per rank (0: the node's cores / ranks on it)"
    )
    device: Literal["auto", "cpu", "cuda"] = Field(
        "auto", description="where to train: auto = cuda:<local rank> if a GPU is present"
    )
    shuffle: Literal["full", "block"] = Field(
        "full",
        description="data order per epoch: a full permutation, or shuffled blocks of "
        "shuffle_block consecutive patches, then shuffled within windows of 16 blocks "
        "(mostly sequential reads for files larger than memory)",
    )
    shuffle_block: int = Field(
        1024, ge=1, description="patches per block when shuffle = 'block'"
    )
    cache_mb: float = Field(
        4096.0,
        ge=0,
        description="hold the training patches in memory on each rank when they take at most "
        "this many MiB (else stream them from the HDF5 files window by window)",
    )
    stream_window: int = Field(
        64, ge=1, description="global batches read from disk at once when streaming"
    )
    val_max_patches: int = Field(
        5000, ge=2, description="validation patches used for the per-epoch loss terms"
    )
    val_metric_patches: int = Field(
        1000, ge=2, description="validation patches used for the per-epoch overlap % and MARE"
    )
    precision: Literal["float32", "float64"] = Field(
        "float32",
        description="floating-point type of training; float64 makes runs on different numbers "
        "of ranks agree to ~1e-12 (batch-hard mining and Adam amplify float32 rounding)",
    )
    embed_batch_size: int = Field(
        4096, ge=1, description="patches per forward pass when embedding (Metric.embed)"
    )
    finetune_epochs: int = Field(
        10, ge=1, description="epochs of a fine-tuning run (mummi-ml train --init-from); "
        "replaces epochs there"
    )
    finetune_learning_rates: list[float] = Field(
        default_factory=lambda: [1e-4, 1e-5],
        description="piecewise-constant learning rates of a fine-tuning run (--init-from); "
        "replace learning_rates there",
    )
    finetune_lr_boundaries: list[int] = Field(
        default_factory=lambda: [5],
        description="epochs after which a fine-tuning run switches learning rate (--init-from); "
        "replace lr_boundaries there",
    )

    def finetuning(self) -> TrainConfig:
        """This config with the fine-tuning schedule (``finetune_*``) as the schedule: what a
        run with ``--init-from`` trains with (and records in its metric.json)."""
        return self.model_validate({
            **self.model_dump(), "epochs": self.finetune_epochs,
            "learning_rates": list(self.finetune_learning_rates),
            "lr_boundaries": list(self.finetune_lr_boundaries),
        })

    @model_validator(mode="after")
    def _schedule(self) -> TrainConfig:
        for prefix in ("", "finetune_"):
            rates = getattr(self, prefix + "learning_rates")
            bounds = getattr(self, prefix + "lr_boundaries")
            if len(rates) != len(bounds) + 1:
                raise ValueError(
                    f"{prefix}learning_rates needs one more value than {prefix}lr_boundaries "
                    f"(got {len(rates)} and {len(bounds)})"
                )
            if any(b2 <= b1 for b1, b2 in zip(bounds, bounds[1:], strict=False)):
                raise ValueError(f"{prefix}lr_boundaries must increase (got {bounds})")
            if any(lr <= 0 for lr in rates):
                raise ValueError(f"{prefix}learning_rates must be > 0 (got {rates})")
        return self
