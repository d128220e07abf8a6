"""The synthetic continuum membrane model: 14 conserved lipid fields and RAS / RAS-RAF particles
on a periodic square domain, advanced by a semi-implicit spectral step.

Lipids (species a, concentration c_a, chemical potential in kT)::

    mu_a = ln c_a + sum_b chi_ab (w * c_b) + V_a,     V_a(r) = sum_p eps_{a,type(p)} phi_p(r - r_p)
    dc_a/dt = D lap c_a + div( D c_a [f_a - sum_{b in leaflet} c_b f_b / sum_b c_b] ) + noise
    f_a = grad(mu_a - ln c_a)   (the explicit force on species a)

The subtracted leaflet-mean force (exchange or packing mobility) makes a leaflet's total flux
vanish: lipids swap places instead of piling up, so enrichment saturates; at equilibrium
``c_a ~ c_a,far exp(-V_a) / sum_b c_b,far exp(-V_b)`` within each leaflet.

``w`` and ``phi`` are Gaussians (``mixing_range_nm``; ``reach / 2``). The linear diffusion is
integrated exactly in Fourier space (exponential time differencing, ETD1): a mode of wavenumber
k decays by ``exp(-D k^2 dt)`` per step for any dt; the nonlinear flux is explicit; the noise is
the divergence of a random flux of amplitude ``sqrt(2 D theta c_mean)``, weighted so each mode
relaxes to variance ``theta c_mean`` (times a Gaussian filter of ``noise_correlation_nm``) for any
dt, and projected so it leaves a leaflet's total density unchanged. Every term is a divergence,
so the k = 0 mode (the species total) never changes; it is held in float64 and re-imposed each
step, so float32 round-off does not accumulate. Positivity: values below
``floor_fraction * mean`` are raised to the floor and the excess of every other pixel is scaled
down to keep the total (rarely active).

Proteins (overdamped, kT = 1): ``dx = D_p F dt + sqrt(2 D_p dt) xi`` with ``F`` = soft pair
forces (core + aggregation) minus ``lipid_drift_scale * grad sum_a eps_a <c_a>_phi`` (drift
towards favoured lipids); RAF binding is a two-state Markov chain with rates k_on, k_off.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from mummi_ml.continuum.params import RAS_RAF, ContinuumError, ModelParams
from mummi_ml.continuum.proteins import binding_step, brownian_step, pair_forces
from mummi_ml.continuum.spectral import SpectralGrid, deposit, interpolate
from mummi_ml.patch.constants import N_CHANNELS

__all__ = ["MembraneState", "MembraneModel"]

_N_TYPES = 2
_LEAFLETS = (slice(0, 8), slice(8, 14))  # inner, outer leaflet channels


def _real_matmul(weights: np.ndarray, fields_h: np.ndarray) -> np.ndarray:
    """``sum_b weights[a, b] * fields_h[b]`` for real weights ``[A, B]`` and complex64 fields
    ``[B, M, K]`` -> complex64 ``[A, M, K]`` (a real matmul on the interleaved float32 view,
    far faster than a complex matmul)."""
    flat = np.ascontiguousarray(fields_h).view(np.float32).reshape(len(fields_h), -1)
    out = np.asarray(weights, dtype=np.float32) @ flat
    return out.view(np.complex64).reshape(len(weights), *fields_h.shape[1:])


@dataclass
class MembraneState:
    """Everything that evolves.

    Attributes:
        c: float32 ``[14, M, M]`` lipid concentrations (channel-first, rows = y, cols = x).
        pos_nm: float64 ``[P, 2]`` protein positions (x, y), unwrapped (nm).
        bound: bool ``[P]`` RAS bound to RAF (type RAS-RAF).
        fixed: bool ``[P]`` proteins held in place (position and binding state).
        time_us: simulated time (us).
        steps: steps taken.
    """

    c: np.ndarray
    pos_nm: np.ndarray
    bound: np.ndarray
    fixed: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=bool))
    time_us: float = 0.0
    steps: int = 0

    def __post_init__(self) -> None:
        p = len(self.pos_nm)
        if len(self.fixed) != p:
            self.fixed = np.zeros(p, dtype=bool)

    @property
    def n_proteins(self) -> int:
        return len(self.pos_nm)

    def wrapped_pos(self, length_nm: float) -> np.ndarray:
        """Protein positions folded into ``[0, L)`` (float64 ``[P, 2]``)."""
        return np.mod(self.pos_nm, length_nm)


class MembraneModel:
    """Advance a :class:`MembraneState` with the parameters ``params`` (drifting with time for
    the campaign preset).

    Args:
        params: resolved parameters (``ModelParams.from_config``).
        rng: the generator for noise, protein motion and binding (deterministic for a seed).
        state: initial state; None draws one (uniform lipids, random proteins).
        grid_pixels: grid side; None uses ``params.domain_pixels`` (``state.c`` sets it if given).
        workers: FFT threads.
    """

    def __init__(
        self,
        params: ModelParams,
        rng: np.random.Generator,
        state: MembraneState | None = None,
        grid_pixels: int | None = None,
        workers: int = 1,
    ):
        self.params = params
        self.rng = rng
        if state is not None:
            n = state.c.shape[-1]
            if state.c.shape != (N_CHANNELS, n, n):
                raise ContinuumError(
                    f"state.c: expected shape [14, M, M], got {list(state.c.shape)}"
                )
        else:
            n = grid_pixels or params.domain_pixels
        self.grid = SpectralGrid(n, params.pixel_nm, workers=workers)
        self.state = state if state is not None else self.initial_state(params, rng, n)
        self.state.c = np.ascontiguousarray(self.state.c, dtype=np.float32)
        self.totals = self.state.c.sum(axis=(1, 2), dtype=np.float64)  # [14] conserved
        self._totals_c64 = self.totals.astype(np.complex64)
        self._leaflet_share = [  # [n_a, 1, 1] share of each species in its leaflet
            (self.totals[lf] / self.totals[lf].sum()).astype(np.float32)[:, None, None]
            for lf in _LEAFLETS
        ]
        self.floor = (params.floor_fraction * self.totals / n**2).astype(np.float32)
        self._prepare_operators(params.dt_us)

    @staticmethod
    def initial_state(
        params: ModelParams, rng: np.random.Generator, n: int | None = None
    ) -> MembraneState:
        """Uniform lipids at the mean composition; ``params.n_ras`` proteins placed uniformly at
        random, a fraction ``initial_bound_fraction`` of them bound to RAF."""
        n = n or params.domain_pixels
        c = np.broadcast_to(params.composition[:, None, None], (N_CHANNELS, n, n))
        pos = rng.uniform(0, n * params.pixel_nm, size=(params.n_ras, 2))
        bound = rng.random(params.n_ras) < params.initial_bound_fraction
        return MembraneState(c=np.array(c, dtype=np.float32), pos_nm=pos, bound=bound)

    def _prepare_operators(self, dt_us: float) -> None:
        g, p = self.grid, self.params
        lam = (p.d_lipid * g.k2).astype(np.float64)  # [M, K] decay rate of each mode (1/us)
        e = np.exp(-lam * dt_us)
        with np.errstate(invalid="ignore", divide="ignore"):
            phi1 = np.where(lam > 0, -np.expm1(-lam * dt_us) / lam, dt_us)
            gn = np.where(lam > 0, np.sqrt(-np.expm1(-2 * lam * dt_us) / (2 * lam)), np.sqrt(dt_us))
        self.dt_us = dt_us
        self._decay = e.astype(np.float32)
        self._phi1 = phi1.astype(np.float32)
        # |k| * exact OU gain * Gaussian filter: each mode relaxes to variance theta * c_mean
        self._noise_gain = (np.sqrt(g.k2) * gn * g.gaussian(p.noise_corr_nm)).astype(np.float32)
        amp = np.sqrt(2 * p.d_lipid * p.noise * self.totals / self.grid.n**2)  # [14]
        self._noise_amp = (np.sqrt(12.0) * amp).astype(np.float32)[:, None, None]  # uniform
        self._mix_filter = g.gaussian(p.mixing_range_nm)
        self._protein_kernel = np.stack([g.peak_gaussian(s) for s in p.reach_sigma_nm])  # [2,M,K]
        self._mean_kernel = np.stack([g.gaussian(s) for s in p.reach_sigma_nm])  # [2, M, K]

    def set_dt(self, dt_us: float) -> None:
        """Change the time step (e.g. for dense histories)."""
        if dt_us <= 0:
            raise ContinuumError(f"dt_us: expected > 0, got {dt_us}")
        self._prepare_operators(dt_us)

    # ------------------------------------------------------------------ one step

    def step(self, n_steps: int = 1) -> None:
        """Advance ``n_steps`` time steps of ``dt_us``."""
        for _ in range(int(n_steps)):
            self._step_once()

    def advance(self, duration_us: float) -> None:
        """Advance by ``duration_us`` (rounded to whole steps)."""
        self.step(int(round(duration_us / self.dt_us)))

    def _step_once(self) -> None:
        st, g = self.state, self.grid
        p = self.params.at(st.time_us)
        c = st.c
        ch = g.rfft(c)  # [14, M, K] complex64
        ch[:, 0, 0] = self._totals_c64  # the exactly conserved k = 0 mode

        types = st.bound.astype(np.int64)  # 0 RAS, 1 RAS-RAF
        pos = st.wrapped_pos(g.length_nm)
        has_proteins = st.n_proteins > 0 and bool(np.any(p.eps != 0))
        has_mixing = bool(np.any(p.chi != 0))

        # explicit part of the chemical potential (mixing + protein potentials), Fourier space
        mu_h = None
        if has_mixing:
            mu_h = _real_matmul(p.chi, ch * self._mix_filter)  # sum_b chi_ab (w * c_b)
        if has_proteins:
            rho = deposit(pos, types, _N_TYPES, g.n, g.pixel_nm)  # [2, M, M] point densities
            phi_h = g.rfft(rho) * self._protein_kernel  # [2, M, K] sum_p phi_t(r - r_p)
            v_h = _real_matmul(p.eps.T, phi_h)  # [14, M, K] V_a
            mu_h = v_h if mu_h is None else mu_h + v_h

        # the proteins move with the fields at the start of the step
        if st.n_proteins:
            self._move_proteins(p, ch, pos, types)

        # lipids: exact diffusion of every mode + explicit flux D c grad(mu_explicit) + noise
        ch_new = ch
        ch_new *= self._decay
        if mu_h is not None:
            grad_h = np.empty((2, *ch.shape), dtype=np.complex64)
            np.multiply(mu_h, g.ikx, out=grad_h[0])
            np.multiply(mu_h, g.iky, out=grad_h[1])
            flux = g.irfft(grad_h)  # [2, 14, M, M] grad mu_explicit
            flux *= c
            for leaflet in _LEAFLETS:  # exchange: a leaflet's total flux vanishes (packing)
                mean_force = flux[:, leaflet].sum(axis=1) / c[leaflet].sum(axis=0)  # [2, M, M]
                flux[:, leaflet] -= c[leaflet][None] * mean_force[:, None]
            flux *= np.float32(p.d_lipid)
            flux_h = g.rfft(flux)
            flux_h[0] *= g.ikx
            flux_h[1] *= g.iky
            flux_h[0] += flux_h[1]
            flux_h[0] *= self._phi1
            ch_new += flux_h[0]
        if p.noise > 0:
            # divergence of an isotropic white flux of amplitude sqrt(2 D theta c_mean): per mode
            # |k| times white noise (the phase of a Gaussian mode is uniform), drawn in real space
            # so the transform is Hermitian (a real field)
            # (uniform variates of unit variance: each Fourier mode sums all pixels, so it is
            # Gaussian to high accuracy, at a tenth of the cost of normal variates)
            xi = self.rng.random(c.shape, dtype=np.float32)
            xi -= np.float32(0.5)
            xi *= self._noise_amp
            noise_h = g.rfft(xi)
            noise_h *= self._noise_gain
            for leaflet, share in zip(_LEAFLETS, self._leaflet_share, strict=True):
                noise_h[leaflet] -= share * noise_h[leaflet].sum(axis=0)  # keep leaflet density
            ch_new += noise_h
        ch_new[:, 0, 0] = self._totals_c64
        c_new = g.irfft(ch_new).astype(np.float32, copy=False)
        st.c = self._enforce_floor(c_new)
        st.time_us += self.dt_us
        st.steps += 1

    def _move_proteins(
        self, p: ModelParams, ch: np.ndarray, pos: np.ndarray, types: np.ndarray
    ) -> None:
        st, g = self.state, self.grid
        force = pair_forces(
            pos, g.length_nm, p.aggregation_kT, p.aggregation_range_nm, p.core_kT, p.core_radius_nm
        )
        if p.lipid_drift_scale and np.any(p.eps != 0):
            # E_t(r) = sum_a eps_ta (phi~_t * c_a)(r): grad by spectral derivative, per type
            e_h = _real_matmul(p.eps, ch) * self._mean_kernel  # [2, M, K]
            grad_e = g.irfft(np.stack([e_h * g.ikx, e_h * g.iky], axis=1))  # [2, 2, M, M]
            for t in range(_N_TYPES):
                sel = types == t
                if np.any(sel):
                    force[sel] -= p.lipid_drift_scale * interpolate(
                        grad_e[t], pos[sel], g.pixel_nm
                    ).T
        diff = p.d_protein[types]
        st.pos_nm = brownian_step(st.pos_nm, force, diff, self.dt_us, self.rng, st.fixed)
        st.bound = binding_step(st.bound, p.k_on, p.k_off, self.dt_us, self.rng, st.fixed)

    def _enforce_floor(self, c: np.ndarray) -> np.ndarray:
        """Raise values below the floor to it, scaling the rest so each total is unchanged."""
        floor = self.floor[:, None, None]
        low = c < floor
        if not low.any():
            return c
        species = np.flatnonzero(low.any(axis=(1, 2)))
        n2 = c.shape[1] * c.shape[2]
        for a in species:  # few species, only when needed
            excess = np.maximum(c[a], floor[a]) - floor[a]
            target = self.totals[a] - float(floor[a, 0, 0]) * n2
            total_excess = excess.sum(dtype=np.float64)
            scale = target / total_excess if total_excess > 0 else 0.0
            c[a] = floor[a] + excess * np.float32(scale)
        return c

    # ------------------------------------------------------------------ helpers

    def concentrations(self) -> np.ndarray:
        """float32 ``[14, M, M]`` current lipid fields (a view; copy before modifying)."""
        return self.state.c

    def protein_types(self) -> np.ndarray:
        """int64 ``[P]``: 0 = RAS, 1 = RAS-RAF."""
        return self.state.bound.astype(np.int64) * RAS_RAF
