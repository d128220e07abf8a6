"""Cut 37 x 37 patches out of the periodic domain and count the proteins inside them.

A patch centred on grid point ``(row i, col j)`` covers rows ``i-18 .. i+18`` and cols
``j-18 .. j+18`` (periodic wrap), i.e. the 30 nm x 30 nm square centred on ``(j h, i h)`` nm.
A protein is inside when both components of its minimum-image offset from that centre are
below 15 nm.
"""

from __future__ import annotations

import numpy as np

from mummi_ml.continuum.proteins import minimum_image
from mummi_ml.patch.constants import PATCH_LENGTH_NM, PATCH_SIZE

__all__ = [
    "nearest_grid_point",
    "extract_windows",
    "count_proteins",
    "proteins_in_window",
    "control_centres",
    "patch_id",
    "protein_uid",
    "window_members",
]

_HALF = PATCH_SIZE // 2  # 18
_OFFSETS = np.arange(-_HALF, _HALF + 1)  # [37]
_ID_SEQ_BITS = 40
_PROTEIN_BITS = 32


def patch_id(replica: int, seq: np.ndarray) -> np.ndarray:
    """Globally unique uint64 patch ids: ``replica << 40 | sequence`` (sequence < 2^40)."""
    seq = np.asarray(seq, dtype=np.uint64)
    return (np.uint64(replica) << np.uint64(_ID_SEQ_BITS)) | seq


def protein_uid(replica: int, index: np.ndarray) -> np.ndarray:
    """Globally unique int64 protein ids: ``replica << 32 | index within the replica``."""
    return (np.int64(replica) << np.int64(_PROTEIN_BITS)) | np.asarray(index, dtype=np.int64)


def nearest_grid_point(pos_nm: np.ndarray, n: int, pixel_nm: float) -> np.ndarray:
    """int64 ``[P, 2]`` (row, col) of the grid point nearest each position (x, y) nm."""
    ij = np.rint(np.asarray(pos_nm) / pixel_nm).astype(np.int64) % n  # (col, row)
    return ij[:, ::-1].copy()


def extract_windows(fields_cl: np.ndarray, centres_rc: np.ndarray) -> np.ndarray:
    """Gather patches around grid points, with periodic wrap.

    Args:
        fields_cl: ``[M, M, C]`` channel-last fields.
        centres_rc: int ``[N, 2]`` (row, col) centre of each patch.

    Returns:
        ``[N, 37, 37, C]`` (same dtype as the fields).
    """
    m = fields_cl.shape[0]
    centres_rc = np.asarray(centres_rc, dtype=np.int64).reshape(-1, 2)
    rows = (centres_rc[:, 0:1] + _OFFSETS[None, :]) % m  # [N, 37]
    cols = (centres_rc[:, 1:2] + _OFFSETS[None, :]) % fields_cl.shape[1]
    return fields_cl[rows[:, :, None], cols[:, None, :]]


def proteins_in_window(centres_nm: np.ndarray, pos_nm: np.ndarray, length_nm: float) -> np.ndarray:
    """bool ``[N, P]``: protein p lies inside the 30 nm window centred at ``centres_nm[n]``."""
    if len(pos_nm) == 0:
        return np.zeros((len(centres_nm), 0), dtype=bool)
    d = minimum_image(pos_nm[None, :, :] - centres_nm[:, None, :], length_nm)  # [N, P, 2]
    return np.all(np.abs(d) < PATCH_LENGTH_NM / 2, axis=-1)


def count_proteins(
    centres_nm: np.ndarray, pos_nm: np.ndarray, bound: np.ndarray, length_nm: float
) -> np.ndarray:
    """int32 ``[N, 2]`` labels (n_ras, n_raf) of the windows centred at ``centres_nm``: every RAS
    inside (bound or not) and those of them bound to RAF."""
    inside = proteins_in_window(centres_nm, pos_nm, length_nm)
    n_ras = inside.sum(axis=1)
    n_raf = (inside & np.asarray(bound, dtype=bool)[None, :]).sum(axis=1)
    return np.stack([n_ras, n_raf], axis=1).astype(np.int32)


def control_centres(
    n_wanted: int,
    pos_nm: np.ndarray,
    n: int,
    pixel_nm: float,
    rng: np.random.Generator,
    tries: int = 8,
) -> np.ndarray:
    """int64 ``[K, 2]`` (row, col) grid points whose window holds no protein, K <= n_wanted
    (fewer when the domain is crowded: ``tries * n_wanted`` random candidates are examined)."""
    if n_wanted <= 0:
        return np.zeros((0, 2), dtype=np.int64)
    cand = rng.integers(0, n, size=(tries * n_wanted, 2))  # (row, col)
    centres_nm = cand[:, ::-1] * pixel_nm
    empty = ~proteins_in_window(centres_nm, pos_nm, n * pixel_nm).any(axis=1)
    return cand[empty][:n_wanted]


def window_members(
    centres_nm: np.ndarray, pos_nm: np.ndarray, bound: np.ndarray, length_nm: float
) -> list[tuple[np.ndarray, np.ndarray]]:
    """For each window: the proteins inside as ``(offsets_nm [k, 2] (x, y) from the centre,
    bound [k])`` (for marking them on plots)."""
    inside = proteins_in_window(centres_nm, pos_nm, length_nm)  # [N, P]
    out = []
    for i in range(len(centres_nm)):  # one entry per plotted patch
        sel = inside[i]
        off = minimum_image(pos_nm[sel] - centres_nm[i][None, :], length_nm)
        out.append((off, np.asarray(bound, dtype=bool)[sel]))
    return out
