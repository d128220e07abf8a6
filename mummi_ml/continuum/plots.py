"""Figures of the synthetic data, in the style of the paper: patches one panel per lipid with the
proteins marked (Figure 1), and the campaign drift as mean +- std over time (Figure 11).
matplotlib with the Agg backend (no display needed); imported only when plotting.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mummi_ml.patch import CHANNEL_NAMES, PIXEL_SIZE_NM, PatchBatch, mean_concentrations
from mummi_ml.patch.constants import PATCH_SIZE

__all__ = ["DriftSeries", "drift_series", "plot_patches", "plot_drift", "DRIFT_CHANNELS"]

DRIFT_CHANNELS: tuple[str, ...] = ("inner_PAPS", "inner_PAP6", "inner_CHOL", "inner_DPSM")
"""Lipids shown in the drift figure (the ones the proteins attract or repel most)."""


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_patches(
    x: np.ndarray,
    y: np.ndarray,
    path: str | Path,
    proteins: Sequence[tuple[np.ndarray, np.ndarray]] | None = None,
    titles: Sequence[str] | None = None,
) -> Path:
    """Figure-1-style grid: one row per patch, one column per lipid (same colour scale down a
    column), proteins marked (circle: RAS, triangle: RAS-RAF).

    Args:
        x: float ``[N, 37, 37, 14]`` raw concentrations.
        y: int ``[N, 2]`` labels (shown in the row title).
        proteins: per patch ``(offsets_nm [k, 2] (x, y) from the centre, bound [k])``.
        titles: per-row labels (default: ``(n_ras, n_raf)``).
    """
    plt = _pyplot()
    x = np.asarray(x)
    n = len(x)
    lo = x.min(axis=(0, 1, 2))
    hi = x.max(axis=(0, 1, 2))
    fig, axes = plt.subplots(n, 14, figsize=(14 * 1.1, n * 1.25 + 0.4), squeeze=False)
    half = PATCH_SIZE // 2
    for i in range(n):
        for ch in range(14):
            ax = axes[i, ch]
            ax.imshow(x[i, :, :, ch], origin="lower", cmap="viridis", vmin=lo[ch], vmax=hi[ch])
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(CHANNEL_NAMES[ch].replace("_", "\n"), fontsize=7)
            if proteins is not None:
                off, bound = proteins[i]
                px = half + np.asarray(off)[:, 0] / PIXEL_SIZE_NM
                py = half + np.asarray(off)[:, 1] / PIXEL_SIZE_NM
                b = np.asarray(bound, dtype=bool)
                ax.scatter(px[~b], py[~b], s=10, marker="o", facecolors="none", edgecolors="w")
                ax.scatter(px[b], py[b], s=12, marker="^", facecolors="none", edgecolors="r")
        label = titles[i] if titles is not None else f"y = ({y[i][0]}, {y[i][1]})"
        axes[i, 0].set_ylabel(label, fontsize=7)
    fig.suptitle("Synthetic patches: one panel per lipid (o RAS, ^ RAS-RAF)", fontsize=9)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


@dataclass
class DriftSeries:
    """Per-time-bin statistics of protein-centred patches.

    Attributes:
        time_us: float64 ``[B]`` bin centres (us).
        count_mean, count_std: float64 ``[B]`` proteins (n_ras) per patch.
        conc_mean, conc_std: float64 ``[B, 14]`` patch-mean concentrations.
    """

    time_us: np.ndarray
    count_mean: np.ndarray
    count_std: np.ndarray
    conc_mean: np.ndarray
    conc_std: np.ndarray


def drift_series(batches: Iterable[PatchBatch], n_bins: int = 20) -> DriftSeries:
    """Bin protein-centred patches (``protein_id >= 0``) by time; streams over ``batches``."""
    times, counts, means = [], [], []
    for b in batches:
        keep = b.protein_id >= 0
        if not np.any(keep):
            continue
        times.append(b.time_us[keep])
        counts.append(b.y[keep, 0].astype(np.float64))
        means.append(mean_concentrations(b.x[keep]).astype(np.float64))
    if not times:
        empty = np.zeros(0)
        return DriftSeries(empty, empty, empty, np.zeros((0, 14)), np.zeros((0, 14)))
    t, k, m = np.concatenate(times), np.concatenate(counts), np.concatenate(means)
    edges = np.linspace(t.min(), t.max() + 1e-9, n_bins + 1)
    which = np.clip(np.searchsorted(edges, t, side="right") - 1, 0, n_bins - 1)
    used = np.unique(which)
    cm = np.array([k[which == i].mean() for i in used])  # one entry per bin, not per patch
    cs = np.array([k[which == i].std() for i in used])
    mm = np.array([m[which == i].mean(axis=0) for i in used])
    ms = np.array([m[which == i].std(axis=0) for i in used])
    centres = 0.5 * (edges[used] + edges[used + 1])
    return DriftSeries(centres, cm, cs, mm, ms)


def plot_drift(
    series: dict[str, DriftSeries],
    path: str | Path,
    channels: Sequence[str] = DRIFT_CHANNELS,
) -> Path:
    """Figure-11-style panels: proteins per patch and a few patch-mean concentrations, mean +- std
    against simulated time, one line per labelled series (e.g. pre-campaign and campaign)."""
    plt = _pyplot()
    panels = 1 + len(channels)
    fig, axes = plt.subplots(1, panels, figsize=(3.2 * panels, 3.0), squeeze=False)
    for label, s in series.items():
        ax = axes[0, 0]
        ax.plot(s.time_us, s.count_mean, label=f"{label} mean")
        ax.fill_between(s.time_us, s.count_mean - s.count_std, s.count_mean + s.count_std,
                        alpha=0.25, label=f"{label} mean +- std")
        for j, name in enumerate(channels):
            ci = CHANNEL_NAMES.index(name)
            ax = axes[0, j + 1]
            mu, sd = s.conc_mean[:, ci], s.conc_std[:, ci]
            ax.plot(s.time_us, mu)
            ax.fill_between(s.time_us, mu - sd, mu + sd, alpha=0.25)
    axes[0, 0].set_title("RAS per patch", fontsize=9)
    axes[0, 0].legend(fontsize=6)
    for j, name in enumerate(channels):
        axes[0, j + 1].set_title(f"patch mean {name}", fontsize=9)
    for ax in axes[0]:
        ax.set_xlabel("simulation time (us)", fontsize=8)
        ax.tick_params(labelsize=7)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
