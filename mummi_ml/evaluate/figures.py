"""Matplotlib figures of the evaluation report (PNG, written atomically). Each function draws
one figure and returns its path."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mummi_ml.durable import atomic_path
from mummi_ml.evaluate.histograms import PairHistogram2D
from mummi_ml.evaluate.pr_curve import PRCurve
from mummi_ml.evaluate.spacetime import BinnedCurve, DecorrelationFit

__all__ = [
    "plot_tsne",
    "time_panel",
    "plot_distance_histograms",
    "plot_pair_density",
    "plot_pr_curves",
    "plot_time_curve",
    "plot_space_curve",
    "plot_mu_densities",
]


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> Path:
    path = Path(path)
    try:
        with atomic_path(path, fsync=False) as tmp:  # no *.png glob matches the temporary
            fig.savefig(tmp, dpi=100, format="png")
    finally:
        _plt().close(fig)
    return path


def plot_tsne(z, classes, class_names, path, max_points: int = 2000, seed: int = 0) -> Path:
    """2-D t-SNE (scikit-learn) of ``z`` coloured by class, on at most ``max_points`` points."""
    from sklearn.manifold import TSNE

    plt = _plt()
    rng = np.random.default_rng(seed)
    idx = np.sort(rng.choice(len(z), size=min(max_points, len(z)), replace=False))
    perplexity = float(min(30.0, max(2.0, (len(idx) - 1) / 3)))
    emb = TSNE(2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(
        np.asarray(z[idx], np.float64)
    )
    fig, ax = plt.subplots(figsize=(5.5, 5))
    for c in np.unique(classes[idx]):
        m = classes[idx] == c
        ax.scatter(emb[m, 0], emb[m, 1], s=4, alpha=0.6, label=class_names.get(int(c), str(c)))
    ax.set(xticks=[], yticks=[], title=f"t-SNE of z ({len(idx)} points)")
    ax.legend(markerscale=3, fontsize=8)
    fig.tight_layout()
    return _save(fig, path)


def plot_distance_histograms(pair_counts, pair_edges, inv_dist, transforms, tau, path) -> Path:
    """Histogram of d_z over all pairs and of d_z(x, rho(x)) per transformation; tau marked."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.5, 4))
    centres = 0.5 * (pair_edges[1:] + pair_edges[:-1])
    width = pair_edges[1] - pair_edges[0]
    ax.bar(
        centres,
        pair_counts / max(pair_counts.sum() * width, 1e-300),
        width=width,
        color="0.7",
        label="all pairs",
    )
    hi = max(float(pair_edges[-1]), float(inv_dist.max()) * 1.05, 1e-12)
    bins = np.linspace(0, hi, 120)
    for t, name in enumerate(transforms):
        ax.hist(inv_dist[:, t], bins=bins, density=True, histtype="step", label=name)
    ax.axvline(tau, color="k", ls="--", label=f"tau = {tau:.3g}")
    ax.set(xlabel="d_z", ylabel="density", yscale="log", title="all pairs vs transformations")
    ax.legend(fontsize=7)
    fig.tight_layout()
    return _save(fig, path)


def _density(ax, h: PairHistogram2D, xlabel: str, ylabel: str, lam: float | None = None):
    counts = h.counts.T
    logc = np.ma.masked_invalid(np.log10(np.where(counts > 0, counts, np.nan)))
    ax.pcolormesh(h.x_edges, h.y_edges, logc, cmap="Greys", shading="flat")
    xc = 0.5 * (h.x_edges[1:] + h.x_edges[:-1])
    ok = np.isfinite(h.y_mean) & (h.counts.sum(1) >= 10)  # running stats of >= 10 pairs
    ax.plot(xc[ok], h.y_mean[ok], color="C0", label="mean")
    ax.fill_between(
        xc[ok],
        (h.y_mean - h.y_std)[ok],
        (h.y_mean + h.y_std)[ok],
        color="C0",
        alpha=0.25,
        label="mean ± std",
    )
    if lam is not None:
        ax.plot(h.x_edges, lam * h.x_edges, "r--", label=f"lambda = {lam:.3g}")
    ax.set(xlabel=xlabel, ylabel=ylabel, ylim=(0, h.y_edges[-1]))
    ax.legend(fontsize=7, loc="upper left")


def plot_pair_density(
    h: PairHistogram2D, lam: float, path, xlabel="d_Upsilon", ylabel="d_z"
) -> Path:
    """Density (log10 count) of all pairs by (d_Upsilon, d_z), the line d_z = lambda d_Upsilon,
    and the running mean ± std of d_z per d_Upsilon bin."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 4.5))
    _density(ax, h, xlabel, ylabel, lam)
    ax.set_title(f"all {int(h.counts.sum()):,} pairs (grey: log10 count)")
    fig.tight_layout()
    return _save(fig, path)


def plot_mu_densities(panels: list[tuple[str, PairHistogram2D]], path) -> Path:
    """Figure 6: d_z against d_mu for each data set (same x range)."""
    plt = _plt()
    fig, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 4.3), squeeze=False)
    for ax, (title, h) in zip(axes[0], panels, strict=True):
        _density(ax, h, "d_mu (mean concentrations)", "d_z")
        ax.set_title(title)
    xmax = max(h.x_edges[-1] for _, h in panels)
    for ax in axes[0]:
        ax.set_xlim(0, xmax)
    fig.tight_layout()
    return _save(fig, path)


def plot_pr_curves(pr: PRCurve, class_names: dict[int, str], path) -> Path:
    """Precision, recall and accuracy against neighbourhood size (all queries and per class),
    and the precision-recall curve with its AUC."""
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    ax = axes[0]
    for name, curve, cls_curves, color in (
        ("precision", pr.precision, pr.class_precision, "C0"),
        ("recall", pr.recall, pr.class_recall, "C1"),
        ("accuracy", pr.accuracy, pr.class_accuracy, "C2"),
    ):
        ax.plot(pr.k, curve, color=color, lw=2, label=f"{name} (all)")
        for c in range(len(pr.class_labels)):
            if np.isfinite(cls_curves[c]).any():
                ax.plot(
                    pr.k,
                    cls_curves[c],
                    color=color,
                    lw=0.7,
                    alpha=0.6,
                    ls=["-", "--", ":", "-."][c % 4],
                )
    ax.set(
        xlabel="neighbourhood size k",
        ylabel="mean over queries",
        xscale="log",
        title="thin: per class ("
        + ", ".join(class_names.get(int(c), str(c)) for c in pr.class_labels)
        + ")",
    )
    ax.legend(fontsize=7)
    axes[1].plot(pr.recall, pr.precision, color="k")
    axes[1].set(
        xlabel="recall",
        ylabel="precision",
        xlim=(0, 1),
        ylim=(0, 1.02),
        title=f"PR curve, AUC = {pr.auc:.3f}",
    )
    fig.tight_layout()
    return _save(fig, path)


def time_panel(ax, curve: BinnedCurve, fit: DecorrelationFit, label: str) -> None:
    """One distance-against-time panel; the x axis spans the sampled time differences only."""
    ax.plot(curve.x, curve.mean, "o-", ms=3, label="mean")
    ax.fill_between(
        curve.x, curve.mean - curve.std, curve.mean + curve.std, alpha=0.25, label="mean ± std"
    )
    t_max = float(curve.x.max()) if len(curve.x) else 1.0
    if fit.determined and None not in (fit.a, fit.b, fit.tau_us):  # tau within the data
        t = np.linspace(0, t_max, 200)
        ax.plot(t, fit.a + fit.b * (1 - np.exp(-t / fit.tau_us)), "k--",
                label=f"fit, tau = {fit.tau_us:.3g} us")
        ax.axvline(fit.tau_us, color="k", ls=":")
    if fit.diffusive_us <= t_max:
        ax.axvline(fit.diffusive_us, color="r", ls="--",
                   label=f"L²/(D(2π)²) = {fit.diffusive_us:.3g} us")
    title = label if fit.determined else f"{label}: time not determined"
    ax.set(xlabel="time difference (us)", ylabel=label, title=title, xlim=(0, 1.02 * t_max))
    ax.legend(fontsize=7)


def plot_time_curve(
    curve: BinnedCurve,
    fit: DecorrelationFit,
    path,
    truth: BinnedCurve | None = None,
    truth_fit: DecorrelationFit | None = None,
) -> Path:
    """d_z against the time difference within histories (mean ± std) with its saturating fit,
    and beside it the same for the patches' own distance d_x (ground truth) when given. A fit
    whose time is not determined is not drawn; the axes never extend beyond the sampled time
    differences (the diffusive estimate is marked only when it lies within them)."""
    plt = _plt()
    panels = [(curve, fit, "d_z")] + ([(truth, truth_fit, "d_x")] if truth is not None else [])
    fig, axes = plt.subplots(1, len(panels), figsize=(6 * len(panels), 4), squeeze=False)
    for ax, (c, f, label) in zip(axes[0], panels, strict=True):
        time_panel(ax, c, f, label)
    fig.suptitle("one protein's history", fontsize=9)
    fig.tight_layout()
    return _save(fig, path)


def plot_space_curve(curve: BinnedCurve, dist, dz, path, half_patch_nm: float = 15.0) -> Path:
    """d_z against distance between patch centres at one time (mean ± std), half a patch
    marked."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.scatter(dist, dz, s=1, color="0.75", alpha=0.3, rasterized=True)
    ax.plot(curve.x, curve.mean, "o-", ms=3, color="C0", label="mean")
    ax.fill_between(
        curve.x,
        curve.mean - curve.std,
        curve.mean + curve.std,
        alpha=0.25,
        color="C0",
        label="mean ± std",
    )
    ax.axvline(half_patch_nm, color="r", ls="--", label=f"{half_patch_nm:g} nm (half a patch)")
    ax.set(xlabel="distance between patch centres (nm)", ylabel="d_z", title="same time step")
    ax.legend(fontsize=7)
    fig.tight_layout()
    return _save(fig, path)
