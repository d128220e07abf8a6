"""The domain of a trained metric: a summary of where its training patches embed.

Written into the model directory at the end of training as ``embedding_domain.json`` (an
optional, additive file: model directories without it still load, and the selector's
out-of-domain guard is then off with a warning). Contents (strict JSON)::

    format            1
    model_version     the weights hash of the model it summarises (metric.json "version")
    n_patches         patches embedded for the summary (an evenly spaced sample, <= 4096)
    centroid          [d] mean embedding (d_z units)
    radius_quantiles  {"q50", "q90", "q99", "max"}: quantiles of the distance of the sample's
                      embeddings to the centroid (d_z units)
    dim_min, dim_max  [d] per-dimension range of the sample (for inspection)
    drift             (optional, for the selector's drift monitor, :mod:`mummi_ml.selector.drift`)
                      reference      [m, d] evenly spaced subset of the sample (m <= 512)
                      nn_q50, nn_q95 quantiles of the distance of the OTHER sample embeddings
                                     to their nearest reference embedding (d_z units)
                      pair_median    median distance between reference embeddings (d_z)
                      class_shares   [4] class fractions of the sample
                      tau            max over <= 32 sample patches of max_rho d(x, rho(x)) (d_z),
                                     rho over the model's transform group
                      transform_group  that group ("paper" or "dihedral")

The selector scores an embedding by its distance to the centroid over ``q99``: 1 is the edge of
99 % of the training patches, and a patch beyond ``selector.ood_threshold`` times that is far
outside anything the metric was trained on (its novelty would be an artefact of extrapolation).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mummi_ml.durable import write_json_atomic
from mummi_ml.metric.errors import MetricError

__all__ = [
    "DOMAIN_FILE",
    "EmbeddingDomain",
    "summarise_embeddings",
    "write_domain",
    "load_domain",
    "write_training_domain",
    "nearest_distance",
    "invariance_distances",
]

DOMAIN_FILE = "embedding_domain.json"
_FORMAT = 1
_MAX_SAMPLE = 4096


@dataclass(frozen=True)
class EmbeddingDomain:
    """Where a model's training patches embed (see the module docstring).

    Attributes:
        centroid: float64 ``[d]`` mean training embedding.
        q50, q90, q99, max: quantiles of the training distances to the centroid (d_z units).
        dim_min, dim_max: float64 ``[d]`` per-dimension range of the training embeddings.
        n_patches: patches summarised.
        model_version: weights hash of the summarised model.
    """

    centroid: np.ndarray
    q50: float
    q90: float
    q99: float
    max: float
    dim_min: np.ndarray
    dim_max: np.ndarray
    n_patches: int
    model_version: str
    reference: np.ndarray | None = None
    nn_q50: float | None = None
    nn_q95: float | None = None
    pair_median: float | None = None
    class_shares: np.ndarray | None = None
    tau: float | None = None
    transform_group: str | None = None

    @property
    def has_drift_reference(self) -> bool:
        """Whether the optional ``drift`` summary is present (models trained since issue 16)."""
        return self.reference is not None

    @property
    def dim(self) -> int:
        return len(self.centroid)

    def distance(self, z: np.ndarray) -> np.ndarray:
        """float64 ``[n]`` distance of embeddings ``z [n, d]`` to the centroid (d_z units)."""
        z = np.asarray(z, dtype=np.float64).reshape(-1, self.dim)
        return np.linalg.norm(z - self.centroid, axis=1)

    def scaled_distance(self, z: np.ndarray) -> np.ndarray:
        """float64 ``[n]`` distance to the centroid in units of the training ``q99`` distance
        (1.0 = the edge of 99 % of the training patches)."""
        return self.distance(z) / max(self.q99, 1e-12)

    def to_dict(self) -> dict:
        out = self._base_dict()
        if self.reference is not None:
            out["drift"] = {
                "reference": np.asarray(self.reference, np.float64).tolist(),
                "nn_q50": self.nn_q50, "nn_q95": self.nn_q95, "pair_median": self.pair_median,
                "class_shares": None if self.class_shares is None
                else np.asarray(self.class_shares, np.float64).tolist(),
                "tau": self.tau, "transform_group": self.transform_group,
            }
        return out

    def _base_dict(self) -> dict:
        return {
            "format": _FORMAT,
            "model_version": self.model_version,
            "n_patches": self.n_patches,
            "centroid": self.centroid.tolist(),
            "radius_quantiles": {"q50": self.q50, "q90": self.q90, "q99": self.q99,
                                 "max": self.max},
            "dim_min": self.dim_min.tolist(),
            "dim_max": self.dim_max.tolist(),
        }

    @classmethod
    def from_dict(cls, d: dict) -> EmbeddingDomain:
        """Inverse of :meth:`to_dict`; ValueError/KeyError/TypeError on a malformed dict."""
        if d.get("format") != _FORMAT:
            raise ValueError(f"format {d.get('format')!r}, expected {_FORMAT}")
        q = d["radius_quantiles"]
        centroid = np.asarray(d["centroid"], dtype=np.float64)
        drift = d.get("drift") or {}
        extra = {}
        if drift:
            ref = np.asarray(drift["reference"], dtype=np.float64)
            if ref.ndim != 2 or ref.shape[1] != len(centroid) or not np.isfinite(ref).all():
                raise ValueError("drift.reference: expected a finite [m, d] list")
            shares = drift.get("class_shares")
            tau = drift.get("tau")
            extra = dict(
                reference=ref, nn_q50=float(drift["nn_q50"]), nn_q95=float(drift["nn_q95"]),
                pair_median=float(drift["pair_median"]),
                class_shares=None if shares is None else np.asarray(shares, np.float64),
                tau=None if tau is None else float(tau),
                transform_group=drift.get("transform_group"),
            )
        dom = cls(
            **extra,
            centroid=centroid,
            q50=float(q["q50"]), q90=float(q["q90"]), q99=float(q["q99"]), max=float(q["max"]),
            dim_min=np.asarray(d["dim_min"], dtype=np.float64),
            dim_max=np.asarray(d["dim_max"], dtype=np.float64),
            n_patches=int(d["n_patches"]),
            model_version=str(d["model_version"]),
        )
        values = [dom.q50, dom.q90, dom.q99, dom.max]
        if centroid.ndim != 1 or len(centroid) == 0 or not np.isfinite(centroid).all():
            raise ValueError("centroid: expected a non-empty list of finite numbers")
        if not all(math.isfinite(v) and v >= 0 for v in values) or dom.q99 <= 0:
            raise ValueError(f"radius_quantiles: expected finite values >= 0, q99 > 0, got {q}")
        return dom


def nearest_distance(z: np.ndarray, reference: np.ndarray, chunk: int = 4096) -> np.ndarray:
    """float64 ``[n]`` Euclidean distance of each ``z [n, d]`` to its nearest ``reference [m, d]``
    row (d_z units); chunked, ~n*m*d flops."""
    z = np.asarray(z, np.float64)
    ref = np.asarray(reference, np.float64)
    out = np.empty(len(z))
    r2 = (ref * ref).sum(1)
    for lo in range(0, len(z), chunk):
        zb = z[lo : lo + chunk]
        d2 = (zb * zb).sum(1)[:, None] + r2[None, :] - 2.0 * zb @ ref.T
        out[lo : lo + len(zb)] = np.sqrt(np.maximum(d2.min(axis=1), 0.0))
    return out


_MAX_REFERENCE = 512


def _drift_reference(z: np.ndarray, classes: np.ndarray | None, tau: float | None,
                     group: str | None) -> dict:
    """The optional drift summary of sample embeddings ``z [n, d]`` (n >= 4), see the module
    docstring: every other point (at most 512) is the reference, the rest measures it."""
    n = len(z)
    m = min(_MAX_REFERENCE, n // 2)
    is_ref = np.zeros(n, bool)
    is_ref[np.unique(np.linspace(0, n - 1, m).round().astype(np.int64))] = True
    ref = z[is_ref]
    nn = nearest_distance(z[~is_ref], ref)
    iu = np.triu_indices(len(ref), 1)
    pair = np.linalg.norm(ref[:, None, :] - ref[None, :, :], axis=2)[iu]
    shares = None
    if classes is not None:
        counts = np.bincount(np.asarray(classes, np.int64), minlength=4).astype(np.float64)
        shares = counts / max(counts.sum(), 1.0)
    return dict(reference=ref, nn_q50=float(np.quantile(nn, 0.5)),
                nn_q95=float(np.quantile(nn, 0.95)), pair_median=float(np.median(pair)),
                class_shares=shares, tau=tau, transform_group=group)


def summarise_embeddings(
    z: np.ndarray, model_version: str, classes: np.ndarray | None = None,
    tau: float | None = None, transform_group: str | None = None,
) -> EmbeddingDomain:
    """Summarise training embeddings ``z [n, d]`` (n >= 1, finite); with n >= 4 also the drift
    reference (``classes [n]`` give the class shares, ``tau`` the invariance scale)."""
    z = np.asarray(z, dtype=np.float64)
    if z.ndim != 2 or len(z) == 0:
        raise MetricError(f"embeddings: expected a non-empty [n, d] array, got {list(z.shape)}")
    if not np.isfinite(z).all():
        raise MetricError("embeddings of the training patches are not finite (diverged model?)")
    c = z.mean(axis=0)
    r = np.linalg.norm(z - c, axis=1)
    q50, q90, q99 = (float(v) for v in np.quantile(r, [0.5, 0.9, 0.99]))
    extra = _drift_reference(z, classes, tau, transform_group) if len(z) >= 4 else {}
    return EmbeddingDomain(c, q50, q90, q99, float(r.max()), z.min(axis=0), z.max(axis=0),
                           len(z), model_version, **extra)


def invariance_distances(
    embed: Callable[[np.ndarray], np.ndarray], x: np.ndarray, group: str = "paper",
) -> np.ndarray:
    """float64 ``[n]``: for each raw patch of ``x [n, 37, 37, 14]``, max over the non-identity
    transformations rho of ``group`` of ``|z(rho(x)) - z(x)|`` (d_z units). Each patch's views
    are embedded as one batch of their own, so the value does not depend on the other patches
    (the same on any rank)."""
    from mummi_ml.patch import apply_transforms

    x = np.asarray(x, np.float32)
    out = np.zeros(len(x))
    for i in range(len(x)):
        views = np.concatenate([x[i : i + 1], apply_transforms(x[i : i + 1], group)[0]])
        z = np.asarray(embed(np.ascontiguousarray(views)), np.float64)
        out[i] = float(np.linalg.norm(z[1:] - z[0], axis=1).max())
    return out


def write_domain(model_dir: str | Path, domain: EmbeddingDomain) -> Path:
    """Write ``embedding_domain.json`` into a model directory (atomically)."""
    path = Path(model_dir) / DOMAIN_FILE
    write_json_atomic(path, domain.to_dict(), fsync=False, indent=1)
    return path


def load_domain(model_dir: str | Path, model_version: str | None = None) -> EmbeddingDomain | None:
    """The domain summary of a model directory, or None if it has none (older models).

    Raises:
        MetricError: the file is malformed, or summarises other weights than ``model_version``.
    """
    path = Path(model_dir) / DOMAIN_FILE
    if not path.is_file():
        return None
    try:
        dom = EmbeddingDomain.from_dict(json.loads(path.read_text()))
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError) as exc:
        raise MetricError(f"{path}: malformed ({type(exc).__name__}: {str(exc)[:200]})") from None
    if model_version is not None and dom.model_version != model_version:
        raise MetricError(f"{path}: summarises model {dom.model_version}, the weights are "
                          f"{model_version} (retrain, or delete the file to run without it)")
    return dom


def write_training_domain(
    model_dir: str | Path, data: Sequence[str | Path], device: str = "cpu",
    max_patches: int = _MAX_SAMPLE,
) -> Path:
    """Embed an evenly spaced sample of the training files with the model in ``model_dir`` and
    write its :class:`EmbeddingDomain` there. Called once by training, after the model is written.

    Args:
        model_dir: a complete model directory (``Metric.load`` works).
        data: the training patch files.
        device: where to embed.
        max_patches: sample size (patches spread evenly over the whole dataset).
    """
    from mummi_ml.metric.model_dir import Metric
    from mummi_ml.patch import PatchDataset

    metric = Metric.load(model_dir, device=device)
    with PatchDataset([Path(p) for p in data]) as ds:
        n = len(ds)
        idx = np.unique(np.linspace(0, n - 1, min(n, max_patches)).round().astype(np.int64))
        sample = ds[idx]
    z = metric.embed(sample.x)
    group = str(metric.config.get("model", {}).get("transform_group", "paper"))
    probe = np.unique(np.linspace(0, len(idx) - 1, min(len(idx), 32)).round().astype(np.int64))
    tau = float(invariance_distances(metric.embed, sample.x[probe], group).max())
    return write_domain(model_dir, summarise_embeddings(z, metric.version, sample.classes,
                                                        tau, group))
