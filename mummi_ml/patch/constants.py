"""The facts about a patch, in one place: shape, lipid channels, pixel size, protein classes.

A patch is ``x`` (float32 ``[37, 37, 14]``: rows, cols, lipid channel; channel-last) with labels
``y = (n_ras, n_raf)``, ``n_ras >= n_raf >= 0``. The grid spans 30 nm, so a pixel is 30/37 nm.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "PATCH_SIZE",
    "N_CHANNELS",
    "PATCH_SHAPE",
    "PATCH_LENGTH_NM",
    "PIXEL_SIZE_NM",
    "N_RADII",
    "CHANNEL_NAMES",
    "INNER_LEAFLET_CHANNELS",
    "DEFAULT_PROFILE_CHANNELS",
    "CLASS_NAMES",
    "N_CLASSES",
    "NO_PROTEIN",
    "ONE_RAS",
    "ONE_RAS_RAF",
    "OTHER",
    "PIXEL_AREA_NM2",
    "MIN_AREA_PER_LIPID_NM2",
    "MAX_CONCENTRATION",
    "NEGATIVE_CONCENTRATION_TOLERANCE",
    "MIN_PROTEIN_DIAMETER_NM",
    "MAX_PROTEINS_PER_PATCH",
    "channel_index",
    "patch_class",
]

PATCH_SIZE: int = 37
"""Pixels along each side of a patch."""

N_CHANNELS: int = 14
"""Lipid concentration channels per pixel."""

PATCH_SHAPE: tuple[int, int, int] = (PATCH_SIZE, PATCH_SIZE, N_CHANNELS)
"""Shape of one patch on disk and in memory: rows, cols, channel."""

PATCH_LENGTH_NM: float = 30.0
"""Side length of a patch (nm)."""

PIXEL_SIZE_NM: float = PATCH_LENGTH_NM / PATCH_SIZE
"""Side length of one pixel (nm), about 0.811 nm."""

N_RADII: int = PATCH_SIZE // 2 + 1
"""Radii of a radial profile: r = 0..18 pixels (the incircle of the patch)."""

CHANNEL_NAMES: tuple[str, ...] = (
    "inner_POPC",
    "inner_PAPC",
    "inner_POPE",
    "inner_DIPE",
    "inner_DPSM",
    "inner_PAPS",
    "inner_PAP6",
    "inner_CHOL",
    "outer_POPC",
    "outer_PAPC",
    "outer_POPE",
    "outer_DIPE",
    "outer_DPSM",
    "outer_CHOL",
)
"""The 14 lipid channels in the order MuMMI uses: inner leaflet first, then outer."""

INNER_LEAFLET_CHANNELS: tuple[int, ...] = tuple(range(8))
"""Indices of the eight inner-leaflet channels."""

DEFAULT_PROFILE_CHANNELS: tuple[int, ...] = INNER_LEAFLET_CHANNELS
"""The eight "most relevant" channels used for radial profiles (the paper's choice)."""

CLASS_NAMES: tuple[str, ...] = ("no protein", "1 RAS", "1 RAS-RAF", "other")
"""Names of the four protein classes, indexed by class number."""

N_CLASSES: int = len(CLASS_NAMES)
NO_PROTEIN, ONE_RAS, ONE_RAS_RAF, OTHER = 0, 1, 2, 3

assert len(CHANNEL_NAMES) == N_CHANNELS

# ---- physical bounds of a patch (checked by mummi_ml.patch.validate) ----------------------------
#
# The schema's unit of x is "lipids per pixel of one leaflet" (a pixel is (30/37 nm)^2): the
# concentration of species a at a pixel is the number of a-lipids of that leaflet whose area lies
# in the pixel. Every lipid of the schema (glycero- and sphingolipids, cholesterol) has at least
# one hydrocarbon chain crossing the leaflet, and no leaflet packs chains more densely than a
# crystal of alkane chains (0.183 nm^2 per chain in orthorhombic polyethylene). So a leaflet pixel
# holds at most PIXEL_AREA_NM2 / MIN_AREA_PER_LIPID_NM2 lipids in total, and a single species can
# never exceed that. Fluid membranes hold about one lipid per pixel (0.6-0.7 nm^2 per lipid), so
# the bound sits about 3.6 times above real densities and refuses garbage (bytes of another file
# read as float32, unit mix-ups of 100x) without refusing any plausible producer.

PIXEL_AREA_NM2: float = PIXEL_SIZE_NM**2
"""Area of one pixel (nm^2), about 0.657."""

MIN_AREA_PER_LIPID_NM2: float = 0.18
"""Smallest area a lipid can take in a leaflet (nm^2): just under one close-packed alkane chain."""

MAX_CONCENTRATION: float = PIXEL_AREA_NM2 / MIN_AREA_PER_LIPID_NM2
"""Upper bound of any concentration value (lipids per pixel of one leaflet), about 3.65."""

NEGATIVE_CONCENTRATION_TOLERANCE: float = 1e-3
"""Concentrations down to ``-NEGATIVE_CONCENTRATION_TOLERANCE`` are accepted (interpolation and
round-off of a producer's fields; 0.1 % of a leaflet's density); anything lower is refused."""

MIN_PROTEIN_DIAMETER_NM: float = 3.0
"""Smallest footprint diameter of a RAS (G-domain, about 3.5-4 nm wide) in the membrane (nm)."""

MAX_PROTEINS_PER_PATCH: int = int(
    (PATCH_LENGTH_NM + MIN_PROTEIN_DIAMETER_NM) ** 2
    / (np.pi * (MIN_PROTEIN_DIAMETER_NM / 2) ** 2)
)
"""Most proteins a patch can count (154): footprints are disjoint discs of diameter
``MIN_PROTEIN_DIAMETER_NM`` whose centres lie in the 30 nm square, so they fit in the
(30 + 3) nm square and their number is at most its area over a disc's area."""


def channel_index(channels: list[int | str] | tuple[int | str, ...] | None) -> np.ndarray:
    """Resolve channel names or indices to an int64 index array (None means the default 8).

    Raises:
        ValueError: an unknown channel name, an index out of range, or a repeated channel.
    """
    if channels is None:
        channels = DEFAULT_PROFILE_CHANNELS
    out = []
    for c in channels:
        if isinstance(c, str):
            if c not in CHANNEL_NAMES:
                valid = ", ".join(CHANNEL_NAMES)
                raise ValueError(f"unknown channel name {c!r}; valid names: {valid}")
            out.append(CHANNEL_NAMES.index(c))
        else:
            ci = int(c)
            if not 0 <= ci < N_CHANNELS:
                raise ValueError(f"channel index {ci} out of range 0..{N_CHANNELS - 1}")
            out.append(ci)
    if len(out) == 0:
        raise ValueError("channels: need at least one channel")
    if len(set(out)) != len(out):
        raise ValueError(f"channels: repeated channel in {list(channels)}")
    return np.asarray(out, dtype=np.int64)


def patch_class(y: np.ndarray) -> np.ndarray:
    """Protein class of each patch from its labels.

    Args:
        y: int ``[N, 2]`` (n_ras, n_raf) or a single ``[2]`` pair.

    Returns:
        int64 ``[N]`` (or a scalar for one pair): 0 = no protein (0, 0), 1 = one RAS (1, 0),
        2 = one RAS-RAF (1, 1), 3 = anything else.
    """
    y = np.asarray(y)
    if y.shape[-1:] != (2,):
        raise ValueError(f"y: expected shape [N, 2] (n_ras, n_raf), got {list(y.shape)}")
    n_ras, n_raf = y[..., 0], y[..., 1]
    cls = np.full(n_ras.shape, OTHER, dtype=np.int64)
    cls[(n_ras == 0) & (n_raf == 0)] = NO_PROTEIN
    cls[(n_ras == 1) & (n_raf == 0)] = ONE_RAS
    cls[(n_ras == 1) & (n_raf == 1)] = ONE_RAS_RAF
    return cls if cls.ndim else cls[()]
