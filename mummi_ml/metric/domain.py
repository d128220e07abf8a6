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

The selector scores an embedding by its distance to the centroid over ``q99``: 1 is the edge of
99 % of the training patches, and a patch beyond ``selector.ood_threshold`` times that is far
outside anything the metric was trained on (its novelty would be an artefact of extrapolation).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
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
        dom = cls(
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


def summarise_embeddings(z: np.ndarray, model_version: str) -> EmbeddingDomain:
    """Summarise training embeddings ``z [n, d]`` (n >= 1, finite)."""
    z = np.asarray(z, dtype=np.float64)
    if z.ndim != 2 or len(z) == 0:
        raise MetricError(f"embeddings: expected a non-empty [n, d] array, got {list(z.shape)}")
    if not np.isfinite(z).all():
        raise MetricError("embeddings of the training patches are not finite (diverged model?)")
    c = z.mean(axis=0)
    r = np.linalg.norm(z - c, axis=1)
    q50, q90, q99 = (float(v) for v in np.quantile(r, [0.5, 0.9, 0.99]))
    return EmbeddingDomain(c, q50, q90, q99, float(r.max()), z.min(axis=0), z.max(axis=0),
                           len(z), model_version)


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
        z = metric.embed(ds[idx].x)
    return write_domain(model_dir, summarise_embeddings(z, metric.version))
