"""The periodic grid in Fourier space: wavenumbers, derivative operators, Gaussian kernels, and
bilinear deposit / interpolation of point particles on the grid.

Conventions: a field is ``[..., M, M]`` (rows = y, cols = x); grid point ``(row i, col j)`` sits
at ``(x, y) = (j h, i h)`` nm, ``h`` the pixel size. Transforms are ``scipy.fft.rfft2`` over the
last two axes (``[..., M, M // 2 + 1]``, complex64 for float32 input), unnormalised forward.
"""

from __future__ import annotations

import numpy as np
import scipy.fft as sfft

__all__ = ["SpectralGrid", "deposit", "interpolate"]


class SpectralGrid:
    """Wavenumbers and operators of an ``n x n`` periodic grid of ``pixel_nm`` pixels.

    Attributes:
        n: grid side (pixels); pixel_nm: pixel side (nm); length_nm: domain side (nm).
        k2: float32 ``[n, n//2+1]`` squared wavenumber |k|^2 (1/nm^2).
        ikx, iky: complex64 ``[1, n//2+1]`` and ``[n, 1]`` spectral derivatives d/dx, d/dy
            (the Nyquist mode of an even grid is zeroed, so derivatives of real fields stay real).
    """

    def __init__(self, n: int, pixel_nm: float, workers: int = 1):
        self.n = int(n)
        self.pixel_nm = float(pixel_nm)
        self.length_nm = self.n * self.pixel_nm
        self.workers = int(workers)
        ky = 2 * np.pi * np.fft.fftfreq(self.n, d=self.pixel_nm)  # [n] rows
        kx = 2 * np.pi * np.fft.rfftfreq(self.n, d=self.pixel_nm)  # [n//2+1] cols
        self.k2 = (ky[:, None] ** 2 + kx[None, :] ** 2).astype(np.float32)
        kx_d, ky_d = kx.copy(), ky.copy()
        if self.n % 2 == 0:
            kx_d[-1] = 0.0
            ky_d[self.n // 2] = 0.0
        self.ikx = (1j * kx_d[None, :]).astype(np.complex64)
        self.iky = (1j * ky_d[:, None]).astype(np.complex64)

    @property
    def spectral_shape(self) -> tuple[int, int]:
        """Shape of one transformed field: ``(n, n // 2 + 1)``."""
        return (self.n, self.n // 2 + 1)

    def rfft(self, a: np.ndarray) -> np.ndarray:
        """Forward transform over the last two axes (float32 -> complex64)."""
        return sfft.rfft2(a, axes=(-2, -1), workers=self.workers)

    def irfft(self, a: np.ndarray) -> np.ndarray:
        """Inverse transform over the last two axes (complex64 -> float32 ``[..., n, n]``)."""
        return sfft.irfft2(a, s=(self.n, self.n), axes=(-2, -1), workers=self.workers)

    def gaussian(self, sigma_nm: float) -> np.ndarray:
        """float32 ``[n, n//2+1]``: transform of a unit-integral Gaussian of ``sigma_nm``
        (a smoothing filter; 1 at k = 0; all ones for sigma 0)."""
        return np.exp(-0.5 * self.k2 * np.float32(sigma_nm) ** 2).astype(np.float32)

    def peak_gaussian(self, sigma_nm: float) -> np.ndarray:
        """float32 ``[n, n//2+1]``: transform of ``exp(-r^2 / (2 sigma^2))`` sampled on the grid
        (peak 1), so that convolving a deposited unit point gives that Gaussian around it."""
        area = 2 * np.pi * sigma_nm**2 / self.pixel_nm**2
        return (area * self.gaussian(sigma_nm)).astype(np.float32)


def _bilinear(pos_nm: np.ndarray, n: int, pixel_nm: float) -> tuple[np.ndarray, np.ndarray]:
    """Flat grid indices ``[P, 4]`` and weights ``[P, 4]`` of bilinear interpolation."""
    u = np.asarray(pos_nm, dtype=np.float64) / pixel_nm  # [P, 2] (x, y) in pixels
    i0 = np.floor(u).astype(np.int64)
    f = u - i0
    cols = np.stack([i0[:, 0], i0[:, 0] + 1, i0[:, 0], i0[:, 0] + 1], axis=1) % n
    rows = np.stack([i0[:, 1], i0[:, 1], i0[:, 1] + 1, i0[:, 1] + 1], axis=1) % n
    fx, fy = f[:, 0:1], f[:, 1:2]
    w = np.concatenate([(1 - fx) * (1 - fy), fx * (1 - fy), (1 - fx) * fy, fx * fy], axis=1)
    return rows * n + cols, w


def deposit(
    pos_nm: np.ndarray, channel: np.ndarray, n_channels: int, n: int, pixel_nm: float
) -> np.ndarray:
    """Spread unit points onto ``n_channels`` grids (bilinear weights, periodic).

    Args:
        pos_nm: float ``[P, 2]`` positions (x, y) in nm (any periodic image).
        channel: int ``[P]`` grid each point goes to (0 .. n_channels-1).

    Returns:
        float32 ``[n_channels, n, n]``; each point adds a total of 1.
    """
    if len(pos_nm) == 0:
        return np.zeros((n_channels, n, n), dtype=np.float32)
    flat, w = _bilinear(pos_nm, n, pixel_nm)
    flat = flat + np.asarray(channel, dtype=np.int64)[:, None] * (n * n)
    out = np.bincount(flat.ravel(), weights=w.ravel(), minlength=n_channels * n * n)
    return out.reshape(n_channels, n, n).astype(np.float32)


def interpolate(fields: np.ndarray, pos_nm: np.ndarray, pixel_nm: float) -> np.ndarray:
    """Bilinear periodic interpolation of ``fields`` (``[..., n, n]``) at ``pos_nm`` (``[P, 2]``).

    Returns:
        ``[..., P]`` values.
    """
    n = fields.shape[-1]
    flat, w = _bilinear(pos_nm, n, pixel_nm)
    vals = fields.reshape(*fields.shape[:-2], n * n)[..., flat]  # [..., P, 4]
    return (vals * w).sum(axis=-1)
