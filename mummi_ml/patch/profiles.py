"""Radial profiles (the paper's Upsilon) and mean concentrations (mu) of patches.

For a channel c and a reference pixel (i*, j*), the radial profile is

    gamma(r) = max { x(i, j, c) : round(sqrt((i - i*)^2 + (j - j*)^2)) = r },   r = 0..18.

The centre profile uses reference (18, 18) over the incircle; each corner profile uses its corner
over that corner's 19x19 quadrant only (rows and cols 0..18 or 18..36). The four corner profiles
are averaged, so the result is invariant under the axis-aligned rotations and reflections. Per
channel the feature is [centre (19), mean corner (19)] = 38 values; channels are concatenated in
the order given. ``sqrt`` of an integer is never exactly half-integer, so rounding has no ties.

Implementation: one gather with a precomputed flat index table, then ``np.maximum.reduceat`` over
the pixels of each (reference, r) group; no Python loop over pixels or patches.
"""

from __future__ import annotations

from functools import cache, lru_cache

import numpy as np

from mummi_ml.patch.constants import N_CHANNELS, N_RADII, PATCH_SHAPE, PATCH_SIZE, channel_index

__all__ = ["radial_profiles", "mean_concentrations", "profile_groups"]

_BLOCK = 512  # patches per block: keeps the gathered array in cache-sized pieces
_LAST = PATCH_SIZE - 1
_MID = PATCH_SIZE // 2
_REFERENCES = ((_MID, _MID), (0, 0), (0, _LAST), (_LAST, 0), (_LAST, _LAST))


@cache
def profile_groups() -> tuple[np.ndarray, np.ndarray]:
    """Pixel groups of the 5 profiles (centre, then corners (0,0), (0,36), (36,0), (36,36)).

    Returns:
        ``(pixels, starts)``: ``pixels`` int64 ``[P]`` flat pixel indices (row * 37 + col) sorted
        by group; ``starts`` int64 ``[5 * 19]`` the offset of group (reference, r) in ``pixels``.
    """
    rows, cols = np.mgrid[0:PATCH_SIZE, 0:PATCH_SIZE]
    flat = rows * PATCH_SIZE + cols
    pixels, starts = [], []
    offset = 0
    for ref_i, (i0, j0) in enumerate(_REFERENCES):
        r = np.rint(np.sqrt((rows - i0) ** 2 + (cols - j0) ** 2)).astype(np.int64)
        if ref_i == 0:
            region = np.ones_like(r, dtype=bool)
        else:  # the corner's own 19x19 quadrant
            region = (np.abs(rows - i0) <= _MID) & (np.abs(cols - j0) <= _MID)
        for radius in range(N_RADII):
            members = flat[region & (r == radius)]
            assert members.size > 0, (ref_i, radius)
            pixels.append(members)
            starts.append(offset)
            offset += members.size
    return np.concatenate(pixels), np.asarray(starts, dtype=np.int64)


@lru_cache(maxsize=32)
def _gather_table(channels: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    pixels, starts = profile_groups()
    table = np.asarray(channels)[:, None] + pixels[None, :] * N_CHANNELS  # [C', P]
    return np.ascontiguousarray(table), starts


def _check_x(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x)
    if x.ndim != 4 or x.shape[1:] != PATCH_SHAPE:
        raise ValueError(f"x: expected shape [N, 37, 37, 14], got {list(x.shape)}")
    return x


def radial_profiles(x: np.ndarray, channels: list[int | str] | None = None) -> np.ndarray:
    """Radial-profile feature Upsilon of each patch.

    Args:
        x: ``[N, 37, 37, 14]`` patches, standardised per channel (the paper computes Upsilon
            after standardisation).
        channels: channel indices or names; None means the eight inner-leaflet channels.

    Returns:
        float32 ``[N, 38 * len(channels)]``: per channel (in the given order) the centre profile
        for r = 0..18, then the mean of the four corner-quadrant profiles for r = 0..18.
    """
    x = _check_x(x)
    chans = tuple(int(c) for c in channel_index(channels))
    table, starts = _gather_table(chans)
    n, n_ch = len(x), len(chans)
    flat = x.reshape(n, -1)
    out = np.empty((n, n_ch, 2 * N_RADII), dtype=np.float32)
    for lo in range(0, n, _BLOCK):
        block = flat[lo : lo + _BLOCK]
        gathered = np.take(block, table, axis=1)  # [b, C', P]
        maxima = np.maximum.reduceat(gathered, starts, axis=2)  # [b, C', 5 * 19]
        maxima = maxima.reshape(len(block), n_ch, 5, N_RADII)
        corners = np.sort(maxima[:, :, 1:], axis=2)  # sorted: sum order fixed -> exactly invariant
        out[lo : lo + _BLOCK, :, :N_RADII] = maxima[:, :, 0]
        out[lo : lo + _BLOCK, :, N_RADII:] = corners.sum(axis=2, dtype=np.float32) / np.float32(4)
    return out.reshape(n, n_ch * 2 * N_RADII)


def mean_concentrations(x: np.ndarray) -> np.ndarray:
    """Mean of each channel over the pixels of each patch: ``[N, 37, 37, 14]`` -> ``[N, 14]``
    (float32, accumulated in float64)."""
    x = _check_x(x)
    return x.mean(axis=(1, 2), dtype=np.float64).astype(np.float32)
