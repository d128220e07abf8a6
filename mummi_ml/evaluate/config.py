"""Configuration of metric evaluation (``evaluate:``)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from mummi_ml.config_loader import StrictModel

__all__ = ["EvaluateConfig"]


class EvaluateConfig(StrictModel):
    """Evaluation (``mummi-ml evaluate``): criteria on a held-out set, baselines, figures."""

    n_points: int = Field(
        30000, ge=2, description="held-out patches evaluated (count; paper: 30,000)"
    )
    seed: int = Field(0, description="seed of the evaluation subset and of t-SNE")
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
