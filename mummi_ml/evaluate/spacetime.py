"""The metric against time and space (the paper's Figure 7).

* Time: within one protein's dense history, d_z between two patches against the time between
  them; mean and std per time difference; a saturating fit d(t) = a + b (1 - exp(-t / tau)).
  The same curve and fit of the patches' own distance (l2 of the standardised images, d_x)
  give the ground-truth decorrelation time; both are reported with their ratio, next to the
  analytic diffusive estimate L^2 / (D (2 pi)^2) (about 0.53 us for L = 30 nm,
  D = 43.36 nm^2/us), which the synthetic fields need not obey. A fit that does not converge,
  or whose time lies outside the sampled time differences, is "not determined", with the
  reason (:class:`DecorrelationFit`).
* Space: patches saved at the same time of the same simulation, d_z against the distance between
  their centres (minimum image on the periodic domain when its size is known); expected:
  correlated below half a patch (15 nm), flat beyond.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from mummi_ml.evaluate.errors import EvaluationError

__all__ = [
    "diffusive_decorrelation_time",
    "BinnedCurve",
    "DecorrelationFit",
    "time_difference_curve",
    "fit_decorrelation",
    "TimeComparison",
    "compare_times",
    "centre_distance_curve",
]


def diffusive_decorrelation_time(length_nm: float, diffusion_nm2_per_us: float) -> float:
    """L^2 / (D (2 pi)^2) in microseconds: the decay time of the slowest Fourier mode of an L x L
    patch under diffusion (paper appendix A.6)."""
    return length_nm**2 / (diffusion_nm2_per_us * (2 * math.pi) ** 2)


@dataclass(frozen=True)
class BinnedCurve:
    """Mean and std of d_z per bin of a pair property. x: bin centres (or exact values) [B];
    mean, std [B]; count [B] pairs per bin."""

    x: np.ndarray
    mean: np.ndarray
    std: np.ndarray
    count: np.ndarray

    def to_dict(self) -> dict:
        return {k: np.asarray(v).tolist() for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict) -> BinnedCurve:
        """The curve :meth:`to_dict` wrote (``null`` values read back as NaN)."""
        return cls(*(np.array([np.nan if v is None else v for v in d[k]], np.float64)
                     for k in ("x", "mean", "std", "count")))


@dataclass(frozen=True)
class DecorrelationFit:
    """d(t) = a + b (1 - exp(-t / tau_us)) fitted to a mean curve.

    Attributes:
        a, b: offset and amplitude (units of the distance); None unless converged.
        tau_us: the decorrelation time (us); None unless ``determined``.
        diffusive_us: the analytic estimate L^2 / (D (2 pi)^2) (us).
        ratio: tau_us / diffusive_us; None unless ``determined``.
        ok: the least-squares fit converged.
        determined: converged, with a rising amplitude (b > 0) and tau within the sampled
            time differences ``[t_min_us, t_max_us]``; a time outside them is an extrapolation,
            never a result.
        reason: why the time is not determined ("" when it is).
        t_min_us, t_max_us: smallest positive and largest sampled time difference (us).
    """

    a: float | None
    b: float | None
    tau_us: float | None
    diffusive_us: float
    ratio: float | None
    ok: bool
    determined: bool = False
    reason: str = ""
    t_min_us: float | None = None
    t_max_us: float | None = None

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> DecorrelationFit:
        """The fit :meth:`to_dict` wrote."""
        return cls(**d)

    def describe(self, unit: str = "us") -> str:
        """``"0.41 us"`` or ``"not determined (reason)"``."""
        if self.determined and self.tau_us is not None:
            return f"{self.tau_us:.3g} {unit}"
        return f"not determined ({self.reason})"


@dataclass(frozen=True)
class TimeComparison:
    """The metric's decorrelation time against the patches' own (ground truth).

    Attributes:
        metric: fit of d_z(t).
        ground_truth: fit of d_x(t), the l2 distance of the standardised patches.
        ratio: metric tau / ground-truth tau; None unless both are determined.
        reason: why the ratio is missing ("" when it is there).
    """

    metric: DecorrelationFit
    ground_truth: DecorrelationFit
    ratio: float | None
    reason: str = ""


def compare_times(metric: DecorrelationFit, ground_truth: DecorrelationFit) -> TimeComparison:
    """Ratio of two fitted decorrelation times, or the reason there is none."""
    missing = [name for name, f in (("d_z", metric), ("d_x", ground_truth)) if not f.determined]
    if missing:
        return TimeComparison(metric, ground_truth, None,
                              f"{' and '.join(missing)} time not determined")
    assert metric.tau_us is not None and ground_truth.tau_us is not None
    return TimeComparison(metric, ground_truth, metric.tau_us / ground_truth.tau_us)


def _group_pairs(groups: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """All index pairs (i < j) of points with the same group value (one loop over groups)."""
    order = np.argsort(groups, kind="stable")
    starts = np.flatnonzero(np.r_[True, groups[order][1:] != groups[order][:-1]])
    ends = np.r_[starts[1:], len(order)]
    ii, jj = [], []
    for s, e in zip(starts, ends, strict=True):
        if e - s < 2:
            continue
        a, b = np.triu_indices(e - s, k=1)
        ii.append(order[s + a])
        jj.append(order[s + b])
    if not ii:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    return np.concatenate(ii), np.concatenate(jj)


def _bin_stats(key: np.ndarray, value: np.ndarray, edges: np.ndarray | None) -> BinnedCurve:
    if edges is None:  # exact values (e.g. multiples of a sampling interval)
        xs, inv = np.unique(key, return_inverse=True)
    else:
        inv = np.clip(np.digitize(key, edges) - 1, 0, len(edges) - 2)
        xs = 0.5 * (edges[1:] + edges[:-1])
    nb = len(xs)
    cnt = np.bincount(inv, minlength=nb).astype(float)
    s1 = np.bincount(inv, weights=value, minlength=nb)
    s2 = np.bincount(inv, weights=value * value, minlength=nb)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = s1 / cnt
        std = np.sqrt(np.maximum(s2 / cnt - mean**2, 0.0))
    keep = cnt > 0
    return BinnedCurve(xs[keep], mean[keep], std[keep], cnt[keep])


def time_difference_curve(
    z: np.ndarray,
    protein_id: np.ndarray,
    time_us: np.ndarray,
    decimals: int = 6,
    chunk_elements: int = 1 << 22,
) -> BinnedCurve:
    """Mean/std of the l2 distance over pairs of one history against their time difference (us).

    Args:
        z: points [N, D] of history patches: embeddings, or flattened standardised patches
            (pairs are processed in chunks of about ``chunk_elements`` values, so D may be
            large).
        protein_id: history id per patch [N] (>= 0).
        time_us: time of each patch [N] (us); differences rounded to ``decimals``.
    """
    if len(z) != len(protein_id) or len(z) != len(time_us):
        raise EvaluationError(
            f"histories: z, protein_id and time_us must have one row per patch, "
            f"got {len(z)}, {len(protein_id)}, {len(time_us)}"
        )
    i, j = _group_pairs(np.asarray(protein_id))
    if len(i) == 0:
        raise EvaluationError("histories: no protein has two or more patches")
    dt = np.round(np.abs(time_us[i] - time_us[j]), decimals)
    z = z.reshape(len(z), -1)
    step = max(1, chunk_elements // max(z.shape[1], 1))
    dz = np.concatenate([
        np.linalg.norm(z[i[k : k + step]].astype(np.float64) - z[j[k : k + step]], axis=1)
        for k in range(0, len(i), step)
    ])
    return _bin_stats(dt, dz, None)


def fit_decorrelation(curve: BinnedCurve, diffusive_us: float) -> DecorrelationFit:
    """Least-squares fit of a + b (1 - exp(-t / tau)) to the mean curve (weights: pair counts).

    The time is *determined* only when the fit converges, the amplitude b is > 0 and tau lies
    within the sampled time differences (smallest positive to largest); otherwise ``tau_us`` is
    None and ``reason`` says why (a curve still rising at the largest time difference, or one
    already flat at the smallest, has no measurable decorrelation time)."""
    from scipy.optimize import curve_fit

    t, y = np.asarray(curve.x, float), np.asarray(curve.mean, float)
    pos = t[t > 0]
    t_min = float(pos.min()) if len(pos) else None
    t_max = float(t.max()) if len(t) else None

    def undetermined(reason: str, a=None, b=None, ok=False) -> DecorrelationFit:
        return DecorrelationFit(a, b, None, diffusive_us, None, ok, False, reason, t_min, t_max)

    if len(pos) < 3:
        return undetermined(f"{len(pos)} positive time differences, the fit needs 3")
    if not np.all(np.isfinite(y)):
        return undetermined("non-finite mean distances")

    def f(tt, a, b, tau):
        return a + b * (1.0 - np.exp(-tt / tau))

    p0 = (float(y[0]), float(max(y.max() - y[0], 1e-6)), float(max(np.median(pos), 1e-9)))
    try:
        (a, b, tau), _ = curve_fit(
            f,
            t,
            y,
            p0=p0,
            sigma=1.0 / np.sqrt(curve.count),
            maxfev=20000,
            bounds=([-np.inf, 0.0, 1e-9], [np.inf, np.inf, 1e3 * t_max]),
        )
    except (RuntimeError, ValueError) as exc:
        return undetermined(f"the least-squares fit did not converge ({str(exc)[:80]})")
    a, b, tau = float(a), float(b), float(tau)
    if not all(map(math.isfinite, (a, b, tau))):
        return undetermined("the fit returned non-finite parameters")
    if b <= 1e-12 * max(abs(a), 1.0):
        return undetermined("no rise with time (fitted amplitude b = 0)", a, b, True)
    if tau > t_max:
        return undetermined(
            f"fitted time {tau:.3g} us is beyond the largest sampled time difference "
            f"{t_max:.3g} us (the curve has not levelled off)", a, b, True)
    if tau < t_min:
        return undetermined(
            f"fitted time {tau:.3g} us is below the smallest sampled time difference "
            f"{t_min:.3g} us (decorrelated before the first sample)", a, b, True)
    return DecorrelationFit(a, b, tau, diffusive_us, tau / diffusive_us, True, True, "",
                            t_min, t_max)


def centre_distance_curve(
    z: np.ndarray,
    centre_nm: np.ndarray,
    frame: np.ndarray,
    domain_nm: float | None = None,
    bin_nm: float = 2.0,
) -> tuple[BinnedCurve, np.ndarray, np.ndarray]:
    """Mean/std of d_z over pairs of patches of one frame against the distance of their centres.

    Args:
        z: embeddings [N, d]; centre_nm: patch centres [N, 2] (nm); frame: frame id per patch
            [N] (pairs are only formed within a frame); domain_nm: periodic domain length (nm)
            for minimum-image distances, or None.

    Returns:
        (curve, distances [P] nm, d_z [P]) over all P pairs.
    """
    i, j = _group_pairs(np.asarray(frame))
    if len(i) == 0:
        raise EvaluationError("space: no frame holds two or more patches")
    delta = centre_nm[i].astype(np.float64) - centre_nm[j]
    if domain_nm:
        delta -= domain_nm * np.round(delta / domain_nm)
    dist = np.linalg.norm(delta, axis=1)
    dz = np.linalg.norm(z[i].astype(np.float64) - z[j], axis=1)
    edges = np.arange(0.0, dist.max() + bin_nm, bin_nm)
    if len(edges) < 2:
        edges = np.array([0.0, bin_nm])
    return _bin_stats(dist, dz, edges), dist, dz
