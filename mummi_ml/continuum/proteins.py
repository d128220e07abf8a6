"""Protein particles: soft pair forces, overdamped Brownian steps, RAF binding as a two-state
Markov chain. All vectorised over proteins (pairs as ``[P, P]`` arrays; P is tens to thousands).
"""

from __future__ import annotations

import numpy as np

__all__ = ["minimum_image", "pair_forces", "brownian_step", "binding_step"]


def minimum_image(d_nm: np.ndarray, length_nm: float) -> np.ndarray:
    """Displacements mapped into ``[-L/2, L/2)`` (periodic minimum image), any shape."""
    return d_nm - length_nm * np.round(d_nm / length_nm)


def pair_forces(
    pos_nm: np.ndarray,
    length_nm: float,
    aggregation_kT: float,
    aggregation_range_nm: float,
    core_kT: float,
    core_radius_nm: float,
) -> np.ndarray:
    """Forces (kT/nm) from the soft pair potential, summed over partners.

    ``U(r) = core_kT (1 - r / r_core)^2 [r < r_core] - aggregation_kT exp(-r^2 / (2 s^2))``:
    a soft core about one protein wide plus a Gaussian attraction of range ``s`` (aggregation).

    Args:
        pos_nm: float64 ``[P, 2]`` positions (x, y).

    Returns:
        float64 ``[P, 2]``.
    """
    p = len(pos_nm)
    if p < 2 or (aggregation_kT == 0 and core_kT == 0):
        return np.zeros((p, 2))
    d = minimum_image(pos_nm[:, None, :] - pos_nm[None, :, :], length_nm)  # [P, P, 2] r_i - r_j
    r = np.sqrt((d**2).sum(-1))  # [P, P]
    np.fill_diagonal(r, 10.0 * length_nm)  # self-pairs: beyond every range, and d = 0
    du_dr = np.zeros_like(r)
    if aggregation_kT:
        s2 = aggregation_range_nm**2
        du_dr += aggregation_kT * r / s2 * np.exp(-0.5 * r**2 / s2)
    if core_kT and core_radius_nm > 0:
        inside = r < core_radius_nm
        du_dr -= np.where(inside, 2 * core_kT * (1 - r / core_radius_nm) / core_radius_nm, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        coef = np.where(r > 0, -du_dr / r, 0.0)  # F_i = -U'(r) (r_i - r_j) / r
    return (coef[:, :, None] * d).sum(axis=1)


def brownian_step(
    pos_nm: np.ndarray,
    force: np.ndarray,
    diffusion: np.ndarray,
    dt_us: float,
    rng: np.random.Generator,
    fixed: np.ndarray | None = None,
) -> np.ndarray:
    """One overdamped Langevin step (kT = 1): ``dx = D F dt + sqrt(2 D dt) xi``.

    Args:
        pos_nm: float64 ``[P, 2]`` (unwrapped positions; the caller wraps when needed).
        force: float64 ``[P, 2]`` (kT/nm).
        diffusion: float64 ``[P]`` per-protein D (nm^2/us).
        fixed: bool ``[P]``: proteins that do not move.

    Returns:
        new positions ``[P, 2]``.
    """
    noise = rng.standard_normal(pos_nm.shape)
    step = diffusion[:, None] * force * dt_us + np.sqrt(2 * diffusion * dt_us)[:, None] * noise
    if fixed is not None:
        step[fixed] = 0.0
    return pos_nm + step


def binding_step(
    bound: np.ndarray,
    k_on: float,
    k_off: float,
    dt_us: float,
    rng: np.random.Generator,
    fixed: np.ndarray | None = None,
) -> np.ndarray:
    """RAF binding / unbinding over ``dt_us`` with the exact two-state transition probabilities,
    so the stationary bound fraction is ``k_on / (k_on + k_off)`` for any time step.

    Args:
        bound: bool ``[P]`` current state; fixed: bool ``[P]`` proteins whose state is held.

    Returns:
        bool ``[P]`` new state.
    """
    k = k_on + k_off
    if k <= 0 or len(bound) == 0:
        return bound.copy()
    p_any = -np.expm1(-k * dt_us)
    p_switch = np.where(bound, k_off / k * p_any, k_on / k * p_any)
    switch = rng.random(len(bound)) < p_switch
    if fixed is not None:
        switch &= ~fixed
    return bound ^ switch
