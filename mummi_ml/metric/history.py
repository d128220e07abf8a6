"""The training log: one CSV row per epoch, and a PNG of the training curves."""

from __future__ import annotations

import csv
from pathlib import Path

from mummi_ml.durable import atomic_path

__all__ = ["LOG_COLUMNS", "write_log", "plot_curves"]

LOG_COLUMNS = (
    "epoch", "lr", "seconds", "samples_per_s",
    "train_loss", "train_inv", "train_rad", "train_lab",
    "val_loss", "val_inv", "val_rad", "val_lab", "val_overlap_pct", "val_mare",
)
"""Columns of ``train_log.csv``; losses are per-batch means (units of d_z)."""


def write_log(path: Path, rows: list[dict[str, float]]) -> None:
    """Write all rows as CSV (atomically)."""
    with atomic_path(path, fsync=False) as tmp, open(tmp, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=LOG_COLUMNS, extrasaction="ignore")
        w.writeheader()
        for row in rows:
            w.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})


def plot_curves(path: Path, rows: list[dict[str, float]]) -> None:
    """Training and validation loss terms against epoch, and overlap / MARE (PNG, atomically)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ep = [r["epoch"] + 1 for r in rows]
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    for term, color in (("loss", "k"), ("inv", "C0"), ("rad", "C1"), ("lab", "C2")):
        axes[0].plot(ep, [r[f"train_{term}"] for r in rows], color=color, label=f"train {term}")
        axes[0].plot(ep, [r[f"val_{term}"] for r in rows], color=color, ls="--")
    axes[0].set(xlabel="epoch", ylabel="loss (solid: train, dashed: val)", yscale="symlog")
    axes[0].legend(fontsize=7)
    axes[1].plot(ep, [r["val_overlap_pct"] for r in rows], "o-")
    axes[1].set(xlabel="epoch", ylabel="validation overlap %")
    axes[2].plot(ep, [r["val_mare"] for r in rows], "o-")
    axes[2].set(xlabel="epoch", ylabel="validation MARE (d_z)")
    fig.tight_layout()
    try:
        with atomic_path(path, fsync=False) as tmp:
            fig.savefig(tmp, dpi=90, format="png")
    finally:
        plt.close(fig)
