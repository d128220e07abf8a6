"""Configuration of the synthetic continuum membrane model (``continuum:``).

Units: lengths in nm, times in us, energies in kT, concentrations in lipids per pixel of
(30/37 nm)^2 for one leaflet (a leaflet's species sum to about 1). The ``pre-campaign`` preset
runs the parameters as given; ``campaign`` starts from the same parameters and moves them
linearly over ``campaign.drift_time_us`` towards the ``campaign`` targets (stronger protein
aggregation and lipid response), as the real campaign drifted away from its training data.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from mummi_ml.config_loader import StrictModel
from mummi_ml.patch.constants import CHANNEL_NAMES

__all__ = [
    "ContinuumConfig",
    "LipidConfig",
    "ProteinSpeciesConfig",
    "ProteinInteractionConfig",
    "CampaignDriftConfig",
    "HistoryConfig",
    "DEFAULT_COMPOSITION",
]

DEFAULT_COMPOSITION: dict[str, float] = {
    "inner_POPC": 0.18,
    "inner_PAPC": 0.12,
    "inner_POPE": 0.12,
    "inner_DIPE": 0.20,
    "inner_DPSM": 0.06,
    "inner_PAPS": 0.14,
    "inner_PAP6": 0.04,
    "inner_CHOL": 0.14,
    "outer_POPC": 0.30,
    "outer_PAPC": 0.10,
    "outer_POPE": 0.05,
    "outer_DIPE": 0.08,
    "outer_DPSM": 0.20,
    "outer_CHOL": 0.27,
}
"""Mean concentration of each species (lipids per pixel; each leaflet sums to 1)."""

_RAS_COUPLING = {
    "inner_POPC": 0.3,
    "inner_PAPC": 0.2,
    "inner_POPE": 0.2,
    "inner_DIPE": -0.3,
    "inner_DPSM": 0.8,
    "inner_PAPS": -1.2,
    "inner_PAP6": -1.5,
    "inner_CHOL": 0.3,
    "outer_DPSM": 0.3,
    "outer_CHOL": -0.2,
}
_RAS_RAF_COUPLING = {
    "inner_POPC": 0.4,
    "inner_PAPC": 0.2,
    "inner_POPE": 0.3,
    "inner_DIPE": -0.2,
    "inner_DPSM": 1.0,
    "inner_PAPS": -1.6,
    "inner_PAP6": -2.0,
    "inner_CHOL": -0.5,
    "outer_DPSM": 0.5,
    "outer_CHOL": -0.4,
}
_MIXING: list[tuple[str, str, float]] = [
    ("inner_DPSM", "inner_CHOL", -1.0),
    ("outer_DPSM", "outer_CHOL", -1.5),
    ("inner_PAPS", "inner_PAP6", -0.5),
    ("inner_CHOL", "outer_CHOL", -0.8),
    ("inner_DIPE", "inner_DPSM", 1.0),
    ("outer_DIPE", "outer_DPSM", 1.0),
]


def _check_species(value: dict[str, float], what: str) -> dict[str, float]:
    bad = [k for k in value if k not in CHANNEL_NAMES]
    if bad:
        names = ", ".join(CHANNEL_NAMES)
        raise ValueError(f"{what}: unknown lipid {bad[0]!r}; valid names: {names}")
    return value


class LipidConfig(StrictModel):
    """The 14 lipid concentration fields: diffusion, mixing and thermal noise."""

    diffusion_nm2_per_us: float = Field(
        43.36, gt=0, description="lipid diffusion coefficient D (nm^2/us)"
    )
    composition: dict[str, float] = Field(
        default_factory=lambda: dict(DEFAULT_COMPOSITION),
        description="mean concentration of each species (lipids per pixel; a leaflet sums to ~1);"
        " every one of the 14 channel names must be given",
    )
    noise_strength: float = Field(
        0.002,
        ge=0,
        description="thermal noise theta: equilibrium per-pixel variance of an ideal species is "
        "theta * c (dimensionless; 1 / effective lipids per pixel); 0 switches noise off",
    )
    noise_correlation_nm: float = Field(
        1.0, ge=0, description="Gaussian correlation length of the noise flux (nm); 0: white"
    )
    mixing: list[tuple[str, str, float]] = Field(
        default_factory=lambda: list(_MIXING),
        description="lipid-lipid interactions chi_ab as [species_a, species_b, chi] "
        "(kT per unit concentration; < 0 attract, > 0 repel); symmetric",
    )
    mixing_strength: float = Field(1.0, ge=0, description="scale applied to every chi (1)")
    mixing_range_nm: float = Field(
        1.5, ge=0, description="Gaussian range of the mixing interactions (nm)"
    )
    floor_fraction: float = Field(
        1e-4,
        gt=0,
        lt=1,
        description="positivity floor as a fraction of each species' mean concentration; values "
        "below it are raised to it and the excess is taken from the rest (conserving)",
    )

    @field_validator("composition")
    @classmethod
    def _composition_complete(cls, value: dict[str, float]) -> dict[str, float]:
        _check_species(value, "composition")
        missing = [n for n in CHANNEL_NAMES if n not in value]
        if missing:
            raise ValueError(f"composition: missing {missing[0]!r} (all 14 species are needed)")
        if any(v <= 0 for v in value.values()):
            raise ValueError("composition: every mean concentration must be > 0")
        return value

    @field_validator("mixing")
    @classmethod
    def _mixing_names(cls, value: list[tuple[str, str, float]]) -> list[tuple[str, str, float]]:
        for a, b, _ in value:
            _check_species({a: 0.0, b: 0.0}, "mixing")
        return value


class ProteinSpeciesConfig(StrictModel):
    """One protein species (RAS alone, or the RAS-RAF complex)."""

    diffusion_nm2_per_us: float = Field(
        5.0, ge=0, description="translational diffusion coefficient D_p (nm^2/us)"
    )
    reach_nm: float = Field(
        4.0,
        gt=0,
        le=15,
        description="reach of the protein-lipid potential (nm): a Gaussian of sigma = reach / 2",
    )
    lipid_coupling: dict[str, float] = Field(
        default_factory=lambda: dict(_RAS_COUPLING),
        description="protein-lipid potential depth per species at the protein centre (kT; "
        "< 0 attracts / enriches, > 0 repels / depletes); species not listed: 0",
    )

    @field_validator("lipid_coupling")
    @classmethod
    def _coupling_names(cls, value: dict[str, float]) -> dict[str, float]:
        return _check_species(value, "lipid_coupling")


class ProteinInteractionConfig(StrictModel):
    """Protein-protein interactions, protein response to lipids, and RAF binding."""

    aggregation_kT: float = Field(
        0.5, ge=0, description="depth of the soft protein-protein attraction (kT)"
    )
    aggregation_range_nm: float = Field(
        5.0, gt=0, description="Gaussian range of the protein-protein attraction (nm)"
    )
    core_radius_nm: float = Field(
        4.0, ge=0, description="soft-core repulsion range (nm), about one protein diameter"
    )
    core_kT: float = Field(10.0, ge=0, description="soft-core repulsion height at contact (kT)")
    lipid_drift_scale: float = Field(
        3.0,
        ge=0,
        description="effective number of lipids a protein couples to: its energy is this times "
        "sum_a eps_a <c_a> over its reach (dimensionless); drives drift along favoured lipids",
    )
    k_on_per_us: float = Field(0.05, ge=0, description="RAF binding rate of a free RAS (1/us)")
    k_off_per_us: float = Field(0.05, ge=0, description="RAF unbinding rate of RAS-RAF (1/us)")
    initial_bound_fraction: float = Field(
        0.5, ge=0, le=1, description="fraction of RAS bound to RAF at the start"
    )


class CampaignDriftConfig(StrictModel):
    """Targets of the ``campaign`` preset, reached linearly after ``drift_time_us``."""

    drift_time_us: float = Field(
        200.0, gt=0, description="simulated time over which parameters move to the targets (us)"
    )
    aggregation_kT: float = Field(
        6.0, ge=0, description="protein-protein attraction depth at the end of the drift (kT)"
    )
    aggregation_range_nm: float = Field(
        10.0, gt=0, description="range of the protein-protein attraction at the end (nm)"
    )
    lipid_coupling_scale: float = Field(
        2.0, ge=0, description="factor on every protein-lipid coupling at the end of the drift"
    )
    mixing_scale: float = Field(
        1.3, ge=0, description="factor on every lipid-lipid chi at the end of the drift"
    )
    k_on_scale: float = Field(
        2.0, ge=0, description="factor on the RAF binding rate at the end of the drift"
    )


class HistoryConfig(StrictModel):
    """Dense single-protein histories for the time analysis (``--histories K``)."""

    interval_us: float = Field(
        0.005,
        gt=0,
        description="time between frames of a history (us); much shorter than the "
        "decorrelation time L^2 / (D (2 pi)^2) ~ 0.53 us",
    )
    duration_us: float = Field(2.0, gt=0, description="length of each history (us)")


class ContinuumConfig(StrictModel):
    """The synthetic continuum model; see docs/continuum.md for the equations."""

    preset: Literal["pre-campaign", "campaign"] = Field(
        "pre-campaign", description="parameter preset; 'campaign' drifts over simulated time"
    )
    seed: int = Field(
        0, ge=0, lt=2**63, description="base seed; each replica (rank) adds its replica id"
    )
    domain_pixels: int = Field(
        256,
        ge=37,
        le=4096,
        description="side of the periodic square domain (pixels of 30/37 nm; 256 px = 207.6 nm)",
    )
    n_ras: int = Field(16, ge=0, description="RAS proteins per replica domain (count)")
    dt_us: float = Field(0.05, gt=0, le=0.5, description="time step (us)")
    frame_interval_us: float = Field(
        0.2, gt=0, description="simulated time between saved frames (us); a multiple of dt_us"
    )
    equilibration_us: float = Field(
        2.0, ge=0, description="simulated time before the first saved frame (us)"
    )
    control_patches_per_frame: int = Field(
        4, ge=0, description="protein-free control patches taken per frame (count)"
    )
    fft_workers: int = Field(1, ge=1, description="threads of each FFT (scipy.fft workers)")
    lipids: LipidConfig = Field(default_factory=LipidConfig)
    ras: ProteinSpeciesConfig = Field(default_factory=ProteinSpeciesConfig)
    ras_raf: ProteinSpeciesConfig = Field(
        default_factory=lambda: ProteinSpeciesConfig(
            diffusion_nm2_per_us=3.0, reach_nm=8.0, lipid_coupling=dict(_RAS_RAF_COUPLING)
        ),
        description="the RAS-RAF complex: slower, wider reach, its own lipid preferences",
    )
    proteins: ProteinInteractionConfig = Field(default_factory=ProteinInteractionConfig)
    campaign: CampaignDriftConfig = Field(default_factory=CampaignDriftConfig)
    histories: HistoryConfig = Field(default_factory=HistoryConfig)

    @model_validator(mode="after")
    def _fits_in_memory(self) -> ContinuumConfig:
        need = estimated_bytes(self)
        have = _physical_memory_bytes()
        if have and need > have:
            raise ValueError(
                f"n_ras={self.n_ras}, domain_pixels={self.domain_pixels}: the model needs about "
                f"{need / 2**30:.3g} GiB, more than this machine's {have / 2**30:.3g} GiB"
            )
        return self

    @model_validator(mode="after")
    def _frames_are_whole_steps(self) -> ContinuumConfig:
        steps = self.frame_interval_us / self.dt_us
        if steps < 1 - 1e-9 or abs(steps - round(steps)) > 1e-6:
            raise ValueError(
                f"frame_interval_us: expected a whole multiple of dt_us={self.dt_us}, "
                f"got {self.frame_interval_us}"
            )
        return self


def estimated_bytes(cfg: ContinuumConfig) -> int:
    """A lower bound on the memory one replica of the model needs (bytes): the 14 lipid fields
    and their spectral work arrays (float64/complex128 [P, P], about 16 copies), and the protein
    pair arrays (float64 [n_ras, n_ras], about 4)."""
    grid = 16 * 14 * 8 * cfg.domain_pixels**2
    pairs = 4 * 8 * cfg.n_ras**2
    return grid + pairs


def _physical_memory_bytes() -> int:
    """This machine's physical memory (bytes), or 0 if the OS does not say."""
    import os

    try:
        return int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return 0
