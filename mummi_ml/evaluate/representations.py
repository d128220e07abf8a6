"""What gets evaluated: a *representation* maps raw patches to points whose Euclidean distance
is the metric under test. The learned metric is one; the paper's baselines are three more.

Every representation maps raw patches x ``[n, 37, 37, 14]`` (float32, unstandardised) to
``[n, dim]`` float32. The transformations of a patch are mapped the same way, so for a baseline
the "transformed" point is the feature of the transformed patch (DESIGN.md, "Evaluation criteria").
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from mummi_ml.patch import PATCH_SHAPE, ChannelStats, mean_concentrations, radial_profiles

__all__ = [
    "Representation",
    "image_representation",
    "mu_representation",
    "upsilon_representation",
    "model_representation",
]


@dataclass(frozen=True)
class Representation:
    """A metric to evaluate: ``embed(x_raw [n,37,37,14]) -> [n, dim]``.

    Attributes:
        name: row label in the table, e.g. ``"l2 (mu; mean conc.)"``.
        kind: ``"baseline"``, ``"ablation"`` or ``"model"``.
        dim: dimensionality of the metric space.
        lam: the proportionality factor the metric was trained with, or None to fit it (least
            squares through the origin) when computing MARE.
        embed: the map.
        note: shown under the table (e.g. how lambda was chosen).
    """

    name: str
    kind: str
    dim: int
    lam: float | None
    embed: Callable[[np.ndarray], np.ndarray]
    note: str = ""


def image_representation(stats: ChannelStats) -> Representation:
    """l2 on standardised images: 37 * 37 * 14 = 19,166 dimensions."""
    dim = int(np.prod(PATCH_SHAPE))

    def embed(x: np.ndarray) -> np.ndarray:
        return stats.standardise(x).reshape(len(x), dim)

    return Representation("l2 (x; images)", "baseline", dim, None, embed)


def mu_representation() -> Representation:
    """l2 on mean concentrations mu (14 values per patch, raw units)."""
    return Representation(
        "l2 (mu; mean conc.)",
        "baseline",
        PATCH_SHAPE[2],
        None,
        lambda x: mean_concentrations(x).astype(np.float32),
    )


def upsilon_representation(stats: ChannelStats, channels: list[int]) -> Representation:
    """l2 on the radial profiles Upsilon of standardised patches (38 values per channel)."""

    def embed(x: np.ndarray) -> np.ndarray:
        return radial_profiles(stats.standardise(x), channels)

    return Representation(
        "l2 (Upsilon; radial profiles)", "baseline", 38 * len(channels), None, embed
    )


def model_representation(metric, name: str = "our metric", kind: str = "model") -> Representation:
    """A trained :class:`mummi_ml.metric.Metric`. Its own lambda_rad is used for MARE when it was
    trained with the radial loss (w_rad > 0); otherwise lambda is fitted like a baseline."""
    lam = metric.lambda_rad if metric.loss_cfg.w_rad > 0 else None
    note = "" if lam is not None else f"{name}: trained without L_rad, lambda fitted"
    return Representation(name, kind, int(metric.latent_dim), lam, metric.embed, note)
