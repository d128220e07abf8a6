"""Model parameters as arrays, resolved once from a :class:`ContinuumConfig`, and their drift.

:class:`ModelParams` is what the numerics use: per-species vectors in channel order, the mixing
matrix, per-protein-type couplings (type 0 = RAS, type 1 = RAS-RAF). :meth:`ModelParams.at`
gives the parameters in force at a simulated time (the ``campaign`` preset drifts).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from mummi_ml.continuum.config import ContinuumConfig
from mummi_ml.errors import MummiMLError
from mummi_ml.patch.constants import CHANNEL_NAMES, N_CHANNELS, PIXEL_SIZE_NM

__all__ = ["ContinuumError", "ModelParams", "RAS", "RAS_RAF"]

RAS, RAS_RAF = 0, 1
"""Protein types: a free RAS, or RAS bound to RAF."""


class ContinuumError(MummiMLError, ValueError):
    """Invalid input to the continuum model (the message names the argument and the value)."""


def _species_vector(values: dict[str, float]) -> np.ndarray:
    return np.array([float(values.get(n, 0.0)) for n in CHANNEL_NAMES], dtype=np.float64)


@dataclass(frozen=True)
class ModelParams:
    """Every number the model uses, in consistent units (nm, us, kT, lipids per pixel).

    Attributes:
        pixel_nm: pixel side (nm).
        domain_pixels: domain side M (pixels).
        n_ras: proteins per domain.
        dt_us, frame_interval_us, equilibration_us: time step, frame spacing, warm-up (us).
        composition: float64 ``[14]`` mean concentrations.
        d_lipid: lipid diffusion (nm^2/us).
        noise: theta, per-pixel equilibrium variance / concentration (0: off).
        noise_corr_nm, mixing_range_nm: Gaussian ranges (nm).
        chi: float64 ``[14, 14]`` symmetric mixing matrix (kT per unit concentration).
        eps: float64 ``[2, 14]`` protein-lipid potential depth per type and species (kT).
        reach_sigma_nm: float64 ``[2]`` Gaussian sigma of the protein-lipid potential (nm).
        d_protein: float64 ``[2]`` protein diffusion per type (nm^2/us).
        aggregation_kT, aggregation_range_nm, core_kT, core_radius_nm: pair potential.
        lipid_drift_scale: protein response to lipids (effective lipids coupled).
        k_on, k_off: RAF binding and unbinding rates (1/us).
        initial_bound_fraction: RAS bound to RAF at t = 0.
        floor_fraction: positivity floor relative to the mean.
        drift: None (pre-campaign), or the campaign targets (see :meth:`at`).
    """

    pixel_nm: float
    domain_pixels: int
    n_ras: int
    dt_us: float
    frame_interval_us: float
    equilibration_us: float
    composition: np.ndarray
    d_lipid: float
    noise: float
    noise_corr_nm: float
    mixing_range_nm: float
    chi: np.ndarray
    eps: np.ndarray
    reach_sigma_nm: np.ndarray
    d_protein: np.ndarray
    aggregation_kT: float
    aggregation_range_nm: float
    core_kT: float
    core_radius_nm: float
    lipid_drift_scale: float
    k_on: float
    k_off: float
    initial_bound_fraction: float
    floor_fraction: float
    drift: dict[str, float] | None = None

    @property
    def domain_nm(self) -> float:
        """Side of the periodic domain (nm)."""
        return self.domain_pixels * self.pixel_nm

    @staticmethod
    def from_config(cfg: ContinuumConfig | None = None, preset: str | None = None) -> ModelParams:
        """Resolve a config section (None: defaults) for ``preset`` (None: ``cfg.preset``)."""
        cfg = cfg if cfg is not None else ContinuumConfig()
        preset = preset or cfg.preset
        if preset not in ("pre-campaign", "campaign"):
            raise ContinuumError(f"preset: expected 'pre-campaign' or 'campaign', got {preset!r}")
        lip = cfg.lipids
        chi = np.zeros((N_CHANNELS, N_CHANNELS))
        for a, b, value in lip.mixing:
            ia, ib = CHANNEL_NAMES.index(a), CHANNEL_NAMES.index(b)
            chi[ia, ib] = chi[ib, ia] = value * lip.mixing_strength
        drift = None
        if preset == "campaign":
            c = cfg.campaign
            drift = {
                "drift_time_us": c.drift_time_us,
                "aggregation_kT": c.aggregation_kT,
                "aggregation_range_nm": c.aggregation_range_nm,
                "lipid_coupling_scale": c.lipid_coupling_scale,
                "mixing_scale": c.mixing_scale,
                "k_on_scale": c.k_on_scale,
            }
        return ModelParams(
            pixel_nm=PIXEL_SIZE_NM,
            domain_pixels=cfg.domain_pixels,
            n_ras=cfg.n_ras,
            dt_us=cfg.dt_us,
            frame_interval_us=cfg.frame_interval_us,
            equilibration_us=cfg.equilibration_us,
            composition=_species_vector(lip.composition),
            d_lipid=lip.diffusion_nm2_per_us,
            noise=lip.noise_strength,
            noise_corr_nm=lip.noise_correlation_nm,
            mixing_range_nm=lip.mixing_range_nm,
            chi=chi,
            eps=np.stack([_species_vector(s.lipid_coupling) for s in (cfg.ras, cfg.ras_raf)]),
            reach_sigma_nm=np.array([cfg.ras.reach_nm, cfg.ras_raf.reach_nm]) / 2.0,
            d_protein=np.array([cfg.ras.diffusion_nm2_per_us, cfg.ras_raf.diffusion_nm2_per_us]),
            aggregation_kT=cfg.proteins.aggregation_kT,
            aggregation_range_nm=cfg.proteins.aggregation_range_nm,
            core_kT=cfg.proteins.core_kT,
            core_radius_nm=cfg.proteins.core_radius_nm,
            lipid_drift_scale=cfg.proteins.lipid_drift_scale,
            k_on=cfg.proteins.k_on_per_us,
            k_off=cfg.proteins.k_off_per_us,
            initial_bound_fraction=cfg.proteins.initial_bound_fraction,
            floor_fraction=lip.floor_fraction,
            drift=drift,
        )

    def drift_fraction(self, time_us: float) -> float:
        """How far the campaign drift has gone at ``time_us`` (0 at the start, 1 at the end)."""
        if self.drift is None:
            return 0.0
        return float(np.clip(time_us / self.drift["drift_time_us"], 0.0, 1.0))

    def at(self, time_us: float) -> ModelParams:
        """The parameters in force at ``time_us``: unchanged for ``pre-campaign``; for
        ``campaign``, aggregation depth and range, protein-lipid couplings, mixing and k_on move
        linearly from their start values to the campaign targets over ``drift_time_us``."""
        if self.drift is None:
            return self
        f = self.drift_fraction(time_us)
        d = self.drift
        return replace(
            self,
            aggregation_kT=self.aggregation_kT + f * (d["aggregation_kT"] - self.aggregation_kT),
            aggregation_range_nm=self.aggregation_range_nm
            + f * (d["aggregation_range_nm"] - self.aggregation_range_nm),
            eps=self.eps * (1.0 + f * (d["lipid_coupling_scale"] - 1.0)),
            chi=self.chi * (1.0 + f * (d["mixing_scale"] - 1.0)),
            k_on=self.k_on * (1.0 + f * (d["k_on_scale"] - 1.0)),
            drift=None,
        )
