"""The embedding used by the selector: the trained metric, or a model-free stand-in."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from mummi_ml.patch import mean_concentrations
from mummi_ml.patch.constants import N_CHANNELS
from mummi_ml.selector.config import SelectorConfig
from mummi_ml.selector.errors import SelectorError

if TYPE_CHECKING:  # the metric (and torch) are imported only when a model is used
    from mummi_ml.metric.domain import EmbeddingDomain

__all__ = ["Embedding", "make_embedding"]


@dataclass(frozen=True)
class Embedding:
    """``embed(x [n, 37, 37, 14] raw float32) -> z [n, dim] float32``, tagged with a version.

    ``domain``: where the model's training patches embed (for the out-of-domain guard), or None
    (no model, a model directory without ``embedding_domain.json``, or the guard is off).
    """

    embed: Callable[[np.ndarray], np.ndarray]
    version: str
    dim: int
    domain: EmbeddingDomain | Any | None = None


def make_embedding(cfg: SelectorConfig) -> Embedding:
    """The embedding named by the config; the metric is loaded once, on the best device."""
    if cfg.embedding == "mean_concentrations":
        return Embedding(mean_concentrations, "mean_concentrations", N_CHANNELS)
    if not cfg.model_dir:
        raise SelectorError(
            "selector.model_dir: expected a trained model directory for embedding='model', got "
            "None (train one with `mummi-ml train`, or set selector.embedding=mean_concentrations)"
        )
    from mummi_ml.metric import Metric
    from mummi_ml.parallel import best_device, detect_launch

    if cfg.device == "auto":  # one GPU per local rank, as in training
        device = str(best_device(detect_launch().local_rank))
    else:
        device = cfg.device
    metric = Metric.load(cfg.model_dir, device=device)
    domain = None
    if cfg.ood_guard:
        from mummi_ml.metric.domain import load_domain

        domain = load_domain(cfg.model_dir, metric.version)
    bs = cfg.embed_batch_size
    return Embedding(lambda x: metric.embed(x, batch_size=bs), metric.version, metric.latent_dim,
                     domain)
