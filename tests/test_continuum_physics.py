"""Physics of the synthetic continuum model (issue 3: these tests are the spec)."""

from __future__ import annotations

import numpy as np
import pytest

from mummi_ml.continuum import ContinuumConfig, MembraneModel, MembraneState, ModelParams
from mummi_ml.continuum.simulate import PatchSimulation
from mummi_ml.patch import CHANNEL_NAMES, PIXEL_SIZE_NM

PAPS = CHANNEL_NAMES.index("inner_PAPS")
PAP6 = CHANNEL_NAMES.index("inner_PAP6")
DPSM = CHANNEL_NAMES.index("inner_DPSM")


def _quiet_config(**changes) -> ContinuumConfig:
    """Small domain; noise, mixing and protein interactions off unless changed."""
    cfg = ContinuumConfig(domain_pixels=48, n_ras=0, equilibration_us=0.0)
    cfg.lipids.noise_strength = 0.0
    cfg.lipids.mixing_strength = 0.0
    cfg.proteins.aggregation_kT = 0.0
    cfg.proteins.core_kT = 0.0
    for key, value in changes.items():
        obj = cfg
        *path, last = key.split(".")
        for part in path:
            obj = getattr(obj, part)
        setattr(obj, last, value)
    return cfg


def _fixed_protein_model(cfg: ContinuumConfig, bound: bool = False) -> MembraneModel:
    params = ModelParams.from_config(cfg)
    n = cfg.domain_pixels
    c = np.broadcast_to(params.composition[:, None, None], (14, n, n)).astype(np.float32)
    centre = np.array([[n // 2 * PIXEL_SIZE_NM, n // 2 * PIXEL_SIZE_NM]])
    state = MembraneState(c=c, pos_nm=centre, bound=np.array([bound]), fixed=np.array([True]))
    return MembraneModel(params, np.random.default_rng(0), state=state)


def _radius_map(n: int) -> np.ndarray:
    ii, jj = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
    return np.hypot(ii - n // 2, jj - n // 2) * PIXEL_SIZE_NM  # [n, n] nm from the centre


def test_species_totals_are_conserved_over_1000_steps():
    cfg = ContinuumConfig(domain_pixels=48, n_ras=6, equilibration_us=0.0, preset="campaign")
    cfg.campaign.drift_time_us = 20.0  # parameters change during the run as well
    sim = PatchSimulation(cfg)
    m = sim.model
    start = m.state.c.sum(axis=(1, 2), dtype=np.float64)
    m.step(1000)
    end = m.state.c.sum(axis=(1, 2), dtype=np.float64)
    assert np.all(np.isfinite(m.state.c))
    assert np.max(np.abs(end / start - 1)) < 1e-6


def test_fourier_mode_of_wavelength_l_decays_at_rate_d_k_squared():
    cfg = _quiet_config(domain_pixels=37, dt_us=0.05)  # L = 30 nm
    params = ModelParams.from_config(cfg)
    n, length = 37, 37 * PIXEL_SIZE_NM
    x = np.arange(n) * PIXEL_SIZE_NM
    wave = 0.1 * np.cos(2 * np.pi * x / length)  # along x (cols)
    c = params.composition[:, None, None] * (1 + wave[None, None, :] + 0 * x[None, :, None])
    state = MembraneState(c=c.astype(np.float32), pos_nm=np.zeros((0, 2)), bound=np.zeros(0, bool))
    model = MembraneModel(params, np.random.default_rng(0), state=state)

    def amplitude() -> float:
        return float(np.abs(np.fft.rfft2(model.state.c[PAPS].astype(np.float64))[0, 1]))

    a0 = amplitude()
    model.step(10)  # 0.5 us
    rate = -np.log(amplitude() / a0) / model.state.time_us
    expected = cfg.lipids.diffusion_nm2_per_us * (2 * np.pi / length) ** 2  # ~1.90 / us
    assert rate == pytest.approx(expected, rel=0.02)


def test_fixed_protein_enriches_attracted_and_depletes_repelled_species():
    model = _fixed_protein_model(_quiet_config())
    model.advance(3.0)
    r = _radius_map(48)
    near, far = r < 2.0, r > 15.0
    ratio = model.state.c[:, near].mean(axis=1) / model.state.c[:, far].mean(axis=1)
    assert ratio[PAPS] > 1.5 and ratio[PAP6] > 1.5  # eps < 0: enriched
    assert ratio[DPSM] < 0.8  # eps > 0: depleted


def test_enrichment_grows_with_interaction_strength():
    ratios = []
    for scale in (0.5, 1.0, 2.0):
        cfg = _quiet_config()
        cfg.ras.lipid_coupling = {k: v * scale for k, v in cfg.ras.lipid_coupling.items()}
        model = _fixed_protein_model(cfg)
        model.advance(3.0)
        r = _radius_map(48)
        c = model.state.c
        ratios.append(c[:, r < 2.0].mean(axis=1) / c[:, r > 15.0].mean(axis=1))
    paps = [rt[PAPS] for rt in ratios]
    dpsm = [rt[DPSM] for rt in ratios]
    assert paps[0] < paps[1] < paps[2]
    assert dpsm[0] > dpsm[1] > dpsm[2]


def test_equilibrium_around_fixed_protein_is_boltzmann_with_packing():
    cfg = _quiet_config()
    model = _fixed_protein_model(cfg)
    model.advance(4.0)
    c = model.state.c
    eps = ModelParams.from_config(cfg).eps[0]  # [14] V_a at the protein centre (kT)
    far = c[:, _radius_map(48) > 18.0].mean(axis=1)  # [14]
    # exchange equilibrium in each leaflet: x_a = x_a,far e^{-V_a} / sum_b x_b,far e^{-V_b}
    for leaflet in (slice(0, 8), slice(8, 14)):
        boltzmann = far[leaflet] * np.exp(-eps[leaflet])
        expected = boltzmann / boltzmann.sum() * far[leaflet].sum()
        np.testing.assert_allclose(c[leaflet, 24, 24], expected, rtol=0.03)


def test_free_protein_msd_grows_as_4_d_t():
    cfg = _quiet_config(domain_pixels=37, n_ras=3000)
    cfg.ras.lipid_coupling = {}
    cfg.ras_raf.lipid_coupling = {}
    cfg.proteins.k_on_per_us = 0.0
    cfg.proteins.initial_bound_fraction = 0.0
    sim = PatchSimulation(cfg)
    start = sim.model.state.pos_nm.copy()
    d_p = cfg.ras.diffusion_nm2_per_us
    for _ in range(4):
        sim.model.step(25)
        t = sim.model.state.time_us
        msd = np.mean(np.sum((sim.model.state.pos_nm - start) ** 2, axis=1))
        assert msd == pytest.approx(4 * d_p * t, rel=0.10)


def test_raf_bound_fraction_relaxes_to_kon_over_kon_plus_koff():
    cfg = _quiet_config(domain_pixels=37, n_ras=4000)
    cfg.ras.lipid_coupling = {}
    cfg.ras_raf.lipid_coupling = {}
    cfg.proteins.k_on_per_us = 0.3
    cfg.proteins.k_off_per_us = 0.1
    cfg.proteins.initial_bound_fraction = 0.0
    sim = PatchSimulation(cfg)
    sim.model.advance(20.0)  # 8 relaxation times 1 / (k_on + k_off)
    fractions = []
    for _ in range(20):
        sim.model.step(10)
        fractions.append(sim.model.state.bound.mean())
    assert np.mean(fractions) == pytest.approx(0.3 / (0.3 + 0.1), rel=0.05)


def _drift_stats(preset: str) -> tuple[np.ndarray, np.ndarray]:
    """Per frame (1 us apart): mean RAS per protein patch, mean inner PAPS of those patches."""
    cfg = ContinuumConfig(
        domain_pixels=128, n_ras=14, dt_us=0.1, frame_interval_us=1.0, equilibration_us=1.0,
        control_patches_per_frame=0, preset=preset,
    )
    cfg.ras.diffusion_nm2_per_us = cfg.ras_raf.diffusion_nm2_per_us = 10.0  # meet sooner
    cfg.proteins.aggregation_range_nm = 8.0
    cfg.campaign.drift_time_us = 10.0
    cfg.campaign.aggregation_kT = 10.0
    sim = PatchSimulation(cfg)
    counts, paps = [], []
    for _, batch in zip(range(20), sim.frames(), strict=False):
        counts.append(batch.y[:, 0].mean())
        paps.append(batch.x[..., PAPS].mean())
    return np.array(counts), np.array(paps)


def test_campaign_preset_drifts_protein_count_and_mean_concentrations():
    # same seed: both runs start from the same state; only the campaign parameters move
    count_pre, paps_pre = _drift_stats("pre-campaign")
    count_camp, paps_camp = _drift_stats("campaign")
    late = slice(10, 20)  # after the drift time
    assert count_camp[late].mean() > 1.3 * count_pre[late].mean()  # aggregation
    assert paps_camp[late].mean() > 1.2 * paps_pre[late].mean()  # stronger lipid response
    assert paps_camp[late].mean() > 1.2 * paps_camp[:2].mean()  # drift within the run
