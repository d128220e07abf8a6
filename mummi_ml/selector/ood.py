"""The out-of-domain guard: patches whose embedding lies far outside where the model's training
patches embed are quarantined (reason code 6) instead of entering the pool.

Farthest-point selection prefers whatever is farthest from everything picked, so an embedding
that the metric extrapolated to (a patch unlike anything it was trained on, or garbage that
passed validation) would be picked first with a huge novelty. The guard compares each embedding's
distance to the centroid of the training embeddings with the distance within which 99 % of the
training patches lie (``q99``, from ``embedding_domain.json`` in the model directory, see
:mod:`mummi_ml.metric.domain`): beyond ``selector.ood_threshold`` (default 3) times ``q99`` the
patch is out of domain.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np

from mummi_ml.selector.config import SelectorConfig
from mummi_ml.selector.errors import SelectorError

__all__ = ["DomainGuard", "make_domain_guard"]

log = logging.getLogger("mummi_ml.selector")


@dataclass(frozen=True)
class DomainGuard:
    """Flags embeddings beyond ``threshold`` x the training q99 distance from the centroid.

    Attributes:
        domain: the model's :class:`~mummi_ml.metric.domain.EmbeddingDomain`.
        threshold: multiple of the training q99 distance (> 1).
    """

    domain: Any
    threshold: float

    def check(self, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(outside bool [n], scaled distance float64 [n])`` for embeddings ``z [n, d]``."""
        r = self.domain.scaled_distance(z)
        return r > self.threshold, r


def make_domain_guard(cfg: SelectorConfig, emb: Any) -> DomainGuard | None:
    """The guard for an embedding (see :class:`mummi_ml.selector.embedder.Embedding`), or None
    when the config turns it off or the embedding has no domain summary (a warning for a model
    without one: it was trained before the summary existed; retrain to get the guard)."""
    if not cfg.ood_guard:
        return None
    domain = getattr(emb, "domain", None)
    if domain is None:
        if cfg.embedding == "model":
            log.warning("selector: model %s has no embedding_domain.json; the out-of-domain "
                        "guard is off (retrain the model with this version to get it)",
                        cfg.model_dir)
        return None
    if domain.dim != emb.dim:
        raise SelectorError(f"embedding domain has dimension {domain.dim}, the embedding "
                            f"{emb.dim} (a summary of another model?)")
    return DomainGuard(domain, float(cfg.ood_threshold))
