"""Radial profiles (the paper's Upsilon) and mean concentrations (mu) of patches.

For a channel c and a reference pixel (i*, j*), the radial profile is

    gamma(r) = max { x(i, j, c) : round(sqrt((i - i*)^2 + (j - j*)^2)) = r },   r = 0..18.

The centre profile uses reference (18, 18) over the incircle; each corner profile uses its corner
over that corner's 19x19 quadrant only (rows and cols 0..18 or 18..36). The four corner profiles
are averaged, so the result is invariant under the axis-aligned rotations and reflections. Per
channel the feature is [centre (19), mean corner (19)] = 38 values; channels are concatenated in
the order given. ``sqrt`` of an integer is never exactly half-integer, so rounding has no ties.

Implementation: the 95 (reference, r) pixel groups (1 to 112 pixels each) are sorted into a few
size classes; each group is padded to its class size by repeating one of its own pixels (which
leaves its maximum unchanged). Per class, one gather with a precomputed index table gives
``[b, K, groups]`` and one ``max`` over the K planes reduces it: contiguous, vectorised work with a
handful of calls per block of patches (``np.maximum.reduceat`` over the same groups costs one
inner-loop call per group and row, about half the time). No Python loop over pixels or patches.
"""

from __future__ import annotations

from functools import cache, lru_cache

import numpy as np

from mummi_ml.patch.constants import N_CHANNELS, N_RADII, PATCH_SHAPE, PATCH_SIZE, channel_index

__all__ = ["radial_profiles", "mean_concentrations", "profile_groups"]

_BLOCK = 128  # patches per block: keeps the gathered arrays in cache-sized pieces
_N_CLASSES = 8  # group size classes: fewer pads more, more costs more calls (8 measured fastest)
_LAST = PATCH_SIZE - 1
_MID = PATCH_SIZE // 2
_REFERENCES = ((_MID, _MID), (0, 0), (0, _LAST), (_LAST, 0), (_LAST, _LAST))
_N_GROUPS = len(_REFERENCES) * N_RADII


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


def _class_sizes(sizes: np.ndarray, n_classes: int) -> np.ndarray:
    """At most ``n_classes`` pad sizes, chosen among the group sizes, that minimise the total
    padded size when each group is padded to the smallest class size >= its own (exact dynamic
    programme over the sorted distinct sizes; ~30 sizes, so it is instant)."""
    values, counts = np.unique(sizes, return_counts=True)
    below = np.concatenate([[0], np.cumsum(counts)])  # groups with size < values[i]: below[i]
    d = len(values)
    # best[c, j]: least total for the j smallest distinct sizes in c classes (largest values[j-1])
    best = np.full((n_classes + 1, d + 1), np.inf)
    cut = np.zeros((n_classes + 1, d + 1), dtype=np.int64)
    best[0, 0] = 0.0
    for c in range(1, n_classes + 1):
        for j in range(1, d + 1):
            totals = best[c - 1, :j] + values[j - 1] * (below[j] - below[:j])
            cut[c, j] = int(np.argmin(totals))
            best[c, j] = totals[cut[c, j]]
    c = int(np.argmin(best[1:, d])) + 1
    chosen, j = [], d
    while j > 0:
        chosen.append(values[j - 1])
        j, c = cut[c, j], c - 1
    return np.asarray(sorted(chosen), dtype=np.int64)


@lru_cache(maxsize=32)
def _gather_plan(channels: tuple[int, ...]) -> tuple[list[np.ndarray], np.ndarray]:
    """Index tables of the padded gather for these channels.

    Returns ``(tables, order)``: per size class K an int64 table ``[K, C' * G_K]`` of flat indices
    into a patch (pixel * 14 + channel); plane k holds the k-th member of each group. Maxima of the
    classes, concatenated, are put in (channel, reference, r) order by ``take(..., order)``.
    """
    pixels, starts = profile_groups()
    sizes = np.diff(np.append(starts, len(pixels)))
    classes = _class_sizes(sizes, _N_CLASSES)
    padded = classes[np.searchsorted(classes, sizes)]
    chans = np.asarray(channels, dtype=np.int64)
    tables, columns = [], []
    for k in classes:
        groups = np.flatnonzero(padded == k)
        plane = np.arange(k)[:, None]  # [K, 1]: member k of each group, its first one past the end
        member = np.where(plane < sizes[groups], plane, 0) + starts[groups]  # [K, G]
        table = chans[None, :, None] + pixels[member][:, None, :] * N_CHANNELS  # [K, C', G]
        tables.append(np.ascontiguousarray(table.reshape(k, -1)))
        columns.append((np.arange(len(chans))[:, None] * _N_GROUPS + groups).reshape(-1))
    columns = np.concatenate(columns)
    order = np.empty_like(columns)
    order[columns] = np.arange(len(columns))
    return tables, order


def _sorted_sum4(a: np.ndarray, b: np.ndarray, c: np.ndarray, d: np.ndarray) -> np.ndarray:
    """Sum of four arrays, element by element, added in ascending order (a sorting network), so
    the float32 result depends only on the multiset of the four values: exactly invariant."""
    low1, high1 = np.minimum(a, b), np.maximum(a, b)
    low2, high2 = np.minimum(c, d), np.maximum(c, d)
    lowest, mid1 = np.minimum(low1, low2), np.maximum(low1, low2)
    highest, mid2 = np.maximum(high1, high2), np.minimum(high1, high2)
    return ((lowest + np.minimum(mid1, mid2)) + np.maximum(mid1, mid2)) + highest


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
    x = _check_x(x).astype(np.float32, copy=False)  # rounding is monotone: maxima unchanged
    chans = tuple(int(c) for c in channel_index(channels))
    tables, order = _gather_plan(chans)
    n, n_ch = len(x), len(chans)
    flat = x.reshape(n, PATCH_SIZE * PATCH_SIZE * N_CHANNELS)
    out = np.empty((n, n_ch, 2 * N_RADII), dtype=np.float32)
    maxima = np.empty((min(n, _BLOCK), n_ch * _N_GROUPS), dtype=np.float32)  # class order
    for lo in range(0, n, _BLOCK):
        block = flat[lo : lo + _BLOCK]
        b, col = len(block), 0
        for table in tables:
            width = table.shape[1]
            np.max(np.take(block, table, axis=1), axis=1, out=maxima[:b, col : col + width])
            col += width
        m = np.take(maxima[:b], order, axis=1).reshape(b, n_ch, len(_REFERENCES), N_RADII)
        out[lo : lo + b, :, :N_RADII] = m[:, :, 0]
        corners = _sorted_sum4(m[:, :, 1], m[:, :, 2], m[:, :, 3], m[:, :, 4])
        out[lo : lo + b, :, N_RADII:] = corners / np.float32(4)
    return out.reshape(n, n_ch * 2 * N_RADII)


def mean_concentrations(x: np.ndarray) -> np.ndarray:
    """Mean of each channel over the pixels of each patch: ``[N, 37, 37, 14]`` -> ``[N, 14]``
    (float32, accumulated in float64)."""
    x = _check_x(x)
    return x.mean(axis=(1, 2), dtype=np.float64).astype(np.float32)
