"""Evolve a single patch with the continuum lipid dynamics: the MD stand-in of ``mummi-ml relax``.

The 37 x 37 patch is treated as a small periodic domain (its edges are not periodic in the big
domain, so a thin seam relaxes diffusively during the first few ns). Proteins are placed from
``y``: the centre protein at the centre grid point, further RAS at the strongest RAS lipid
signature away from those already placed; the first ``n_raf`` of them are RAS-RAF. All of them
are held fixed (position and binding state) while the lipids diffuse, mix, respond to the
protein potentials and fluctuate, exactly as in the big model.
"""

from __future__ import annotations

import numpy as np

from mummi_ml.continuum.config import ContinuumConfig
from mummi_ml.continuum.model import MembraneModel, MembraneState
from mummi_ml.continuum.params import ContinuumError, ModelParams
from mummi_ml.continuum.proteins import minimum_image
from mummi_ml.continuum.spectral import SpectralGrid
from mummi_ml.patch.constants import PATCH_SHAPE, PATCH_SIZE, PIXEL_SIZE_NM

__all__ = ["relax_patch", "place_patch_proteins"]


def place_patch_proteins(
    c: np.ndarray, n_ras: int, params: ModelParams, grid: SpectralGrid
) -> np.ndarray:
    """Positions (x, y) nm ``[n_ras, 2]`` of the proteins of a patch: the first at the centre
    grid point, each further one at the maximum of the smoothed RAS lipid signature
    ``-sum_a eps_RAS,a (c_a / mean_a)`` at least one core radius from those already placed.

    Args:
        c: float32 ``[14, n, n]`` concentrations.
    """
    centre = PATCH_SIZE // 2 * params.pixel_nm
    pos = [np.array([centre, centre])]
    if n_ras <= 1:
        return np.array(pos[:n_ras], dtype=np.float64).reshape(n_ras, 2)
    mean = c.mean(axis=(1, 2))[:, None, None]
    signature = -np.tensordot(params.eps[0], c / mean, axes=1)  # [n, n]
    smooth = grid.irfft(grid.rfft(signature) * grid.gaussian(params.reach_sigma_nm[0]))
    coords = np.stack(np.meshgrid(np.arange(grid.n), np.arange(grid.n), indexing="xy"), -1)
    coords = coords * params.pixel_nm  # [n, n, 2] (x, y) of each grid point
    exclusion = max(params.core_radius_nm, 2 * params.pixel_nm)
    for _ in range(n_ras - 1):  # a handful of proteins, not pixels
        d = minimum_image(coords[:, :, None, :] - np.array(pos)[None, None], grid.length_nm)
        free = np.all(np.hypot(d[..., 0], d[..., 1]) >= exclusion, axis=-1)
        if not free.any():
            free = np.ones_like(free)
        best = np.unravel_index(np.argmax(np.where(free, smooth, -np.inf)), smooth.shape)
        pos.append(coords[best])
    return np.array(pos, dtype=np.float64)


def relax_patch(
    x: np.ndarray,
    y: np.ndarray | tuple[int, int],
    duration_us: float,
    seed: int = 0,
    config: ContinuumConfig | None = None,
    preset: str | None = None,
) -> np.ndarray:
    """Evolve one patch for ``duration_us`` with the continuum lipid dynamics.

    Args:
        x: float ``[37, 37, 14]`` raw (not standardised) concentrations, channel-last.
        y: ``(n_ras, n_raf)``, ``n_ras >= n_raf >= 0``.
        duration_us: simulated time (us), >= 0.
        seed: seed of the noise.
        config: the ``continuum:`` section (None: defaults); its domain size and protein count
            are replaced by the patch's.
        preset: parameters at the start of that preset (None: ``config.preset``).

    Returns:
        float32 ``[37, 37, 14]`` concentrations after ``duration_us``; each species' total is
        conserved.
    """
    x = np.asarray(x)
    if x.shape != PATCH_SHAPE:
        raise ContinuumError(f"x: expected shape {list(PATCH_SHAPE)}, got {list(x.shape)}")
    if not np.all(np.isfinite(x)):
        raise ContinuumError("x: expected finite concentrations, got NaN or inf")
    if np.any(x.mean(axis=(0, 1)) <= 0):
        raise ContinuumError("x: expected raw concentrations with a positive mean per species")
    n_ras, n_raf = (int(v) for v in np.asarray(y).reshape(2))
    if not n_ras >= n_raf >= 0:
        raise ContinuumError(f"y: expected n_ras >= n_raf >= 0, got ({n_ras}, {n_raf})")
    if not duration_us >= 0:
        raise ContinuumError(f"duration_us: expected >= 0, got {duration_us}")
    cfg = config if config is not None else ContinuumConfig()
    params = ModelParams.from_config(cfg, preset)
    c = np.ascontiguousarray(x.transpose(2, 0, 1), dtype=np.float32)  # [14, 37, 37]
    grid = SpectralGrid(PATCH_SIZE, PIXEL_SIZE_NM)
    pos = place_patch_proteins(c, n_ras, params, grid)
    bound = np.arange(n_ras) < n_raf
    state = MembraneState(c=c, pos_nm=pos, bound=bound, fixed=np.ones(n_ras, dtype=bool))
    model = MembraneModel(params, np.random.default_rng(seed), state=state)
    if duration_us == 0:
        return x.astype(np.float32, copy=True)
    n_steps = max(1, int(np.ceil(duration_us / params.dt_us - 1e-9)))
    model.set_dt(duration_us / n_steps)
    model.step(n_steps)
    return np.ascontiguousarray(model.state.c.transpose(1, 2, 0), dtype=np.float32)
