"""Selection groups: which queue (class) and which bin a candidate belongs to, and which group
the next pick must come from.

The exact greedy (:mod:`mummi_ml.selector.greedy`) works on *groups*: small integers stored in
the pool's ``classes`` array. Without a queue configuration the groups are the four protein
classes of :func:`mummi_ml.patch.patch_class` with the optional ``selector.class_quotas``
(the original behaviour). With ``selector.queues`` (:class:`QueuesConfig`) a patch goes to a
*queue* by its producer class (the optional ``class`` dataset) or, failing that, by its patch
type ``ras<n_ras>raf<n_raf>`` matched against each queue's patterns (MuMMI's ``patch2sampler``),
and inside a *binned* queue to a bin of a per-patch scalar (e.g. the RAS-RAS distance): each bin
is a group of its own with its own share of the queue, so each bin keeps its own diversity.

The pick's group is decided by the counts of picks and the candidates available per group,
both identical on every rank (so the decision is rank-count invariant):

* the queue furthest below its target share ``share_q * (picks + 1) - picks_q`` among queues
  with candidates and a positive share (ties: the lowest queue); inside it, the bin furthest
  below ``bin_share_b * (picks_q + 1) - picks_qb`` among its bins with candidates and a positive
  share; if no queue with a positive share has candidates, any group with candidates;
* a pick is *random* while the allowed groups hold fewer than ``random_picks`` picks (DynIm's
  ``min_rand_b4_importance``): the allowed candidate with the smallest key
  ``splitmix64(seed XOR patch id)`` (ties: smallest id), reproducible for a seed and independent
  of ranks and arrival order; otherwise the most novel.
"""

from __future__ import annotations

import fnmatch
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from pydantic import Field, model_validator

from mummi_ml.config_loader import StrictModel
from mummi_ml.patch.batch import NO_CLASS, PatchBatch
from mummi_ml.patch.constants import CLASS_NAMES, N_CLASSES

__all__ = [
    "BinsConfig",
    "QueueConfig",
    "QueuesConfig",
    "SelectionGroups",
    "MAX_GROUPS",
    "mummi_queues",
    "patch_types",
    "random_keys",
]

MAX_GROUPS = 127
"""Most selection groups (queues x bins): group ids are stored as int8 in the pool."""


class BinsConfig(StrictModel):
    """Bins of a per-patch scalar inside one queue (DynIm's ``SamplerBinned``, 1-D)."""

    edges: list[float] = Field(
        description="ascending bin edges of the scalar (e.g. nm for the RAS-RAS distance); "
        "n edges make n-1 bins; values below the first edge go to the first bin, above the "
        "last to the last bin; a patch without a value (NaN) goes to the first bin",
        min_length=2,
    )
    shares: list[float] | None = Field(
        None, description="share of each bin inside the queue (normalised); null: equal shares"
    )

    @model_validator(mode="after")
    def _check(self) -> BinsConfig:
        e = self.edges
        pairs = zip(e[:-1], e[1:], strict=True)
        if any(not math.isfinite(v) for v in e) or any(b <= a for a, b in pairs):
            raise ValueError(f"edges: expected finite, strictly ascending values, got {e}")
        if self.shares is not None:
            if len(self.shares) != len(e) - 1:
                raise ValueError(f"shares: expected {len(e) - 1} values (one per bin), "
                                 f"got {len(self.shares)}")
            if any(s < 0 for s in self.shares) or sum(self.shares) <= 0:
                raise ValueError(f"shares: expected non-negative values with a positive sum, "
                                 f"got {self.shares}")
        return self


class QueueConfig(StrictModel):
    """One queue (MuMMI: one DynIm sampler): a share of the picks and the patch types in it."""

    name: str = Field(min_length=1, description="queue name, e.g. 'dimers'")
    share: float = Field(ge=0, description="target fraction of the picks (normalised over queues)")
    types: list[str] = Field(
        default_factory=list,
        description="patch types of this queue: patterns of 'ras<n_ras>raf<n_raf>' with shell "
        "wildcards, e.g. ['ras1raf0', 'ras1raf1'] or ['ras2raf*']",
    )
    bins: BinsConfig | None = Field(None, description="binning of the queue; null: one bin")


class QueuesConfig(StrictModel):
    """MuMMI-style queues (``selector.queues``); replaces ``selector.class_quotas``."""

    queues: list[QueueConfig] = Field(min_length=1, description="the queues, in order")
    default: str = Field(
        description="queue of a patch whose type matches no pattern (MuMMI: 'invalid')"
    )

    @model_validator(mode="after")
    def _check(self) -> QueuesConfig:
        names = [q.name for q in self.queues]
        if len(set(names)) != len(names):
            raise ValueError(f"queues: repeated queue name in {names}")
        if self.default not in names:
            raise ValueError(f"default: {self.default!r} is not a queue; queues: {names}")
        if sum(q.share for q in self.queues) <= 0:
            raise ValueError("queues: the shares must have a positive sum")
        n = sum(len(q.bins.edges) - 1 if q.bins else 1 for q in self.queues)
        if n > MAX_GROUPS:
            raise ValueError(f"queues: {n} queues x bins, at most {MAX_GROUPS}")
        return self


def mummi_queues(dimer_bins: int = 5, max_distance_nm: float = 15.0 * math.sqrt(2.0) + 3.0
                 ) -> QueuesConfig:
    """MuMMI's four queues: lipid-only 0.1 (ras0raf0), RAS monomers 0.5 (ras1raf0,
    ras1raf1), dimers 0.4 (ras2raf*; binned on the RAS-RAS distance, ``dimer_bins`` equal
    bins over [0, ``max_distance_nm``] nm, DynIm's range), invalid 0.0 (everything else)."""
    edges = np.linspace(0.0, max_distance_nm, dimer_bins + 1).tolist()
    return QueuesConfig(queues=[
        QueueConfig(name="lipid-only", share=0.1, types=["ras0raf0"]),
        QueueConfig(name="monomers", share=0.5, types=["ras1raf0", "ras1raf1"]),
        QueueConfig(name="dimers", share=0.4, types=["ras2raf*"], bins=BinsConfig(edges=edges)),
        QueueConfig(name="invalid", share=0.0, types=[]),
    ], default="invalid")


def patch_types(y: np.ndarray) -> list[str]:
    """MuMMI's patch type of each patch from its counts: ``ras<n_ras>raf<n_raf>``."""
    y = np.asarray(y).reshape(-1, 2)
    return [f"ras{int(a)}raf{int(b)}" for a, b in y]


_M64 = np.uint64(0xFFFFFFFFFFFFFFFF)


def random_keys(ids: np.ndarray, seed: int) -> np.ndarray:
    """uint64 ``[n]`` random keys of patch ids: splitmix64(seed XOR id), a fixed random
    permutation of the ids for a seed (the order of random picks)."""
    with np.errstate(over="ignore"):
        x = np.asarray(ids, dtype=np.uint64) ^ np.uint64(int(seed) & 0xFFFFFFFFFFFFFFFF)
        x = x + np.uint64(0x9E3779B97F4A7C15)
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return (x ^ (x >> np.uint64(31))) & _M64


@dataclass(frozen=True)
class SelectionGroups:
    """The groups of a selector and the rule that says which group the next pick comes from.

    Attributes:
        names: group names ``[G]`` ("dimers[2]" for bin 2 of queue "dimers").
        queue: int64 ``[G]`` the queue of each group.
        queue_names: queue names ``[Q]``.
        queue_share: float64 ``[Q]`` normalised queue shares, or None (no quotas).
        bin_share: float64 ``[G]`` share of each group inside its queue (normalised per queue).
        edges: per queue, the bin edges (None: not binned).
        patterns: per queue, its patch-type patterns.
        default: the queue of unmatched patch types (-1: the class of the counts; flat groups).
        random_picks: picks made at random while the allowed groups hold fewer (count).
        seed: seed of the random picks.
    """

    names: tuple[str, ...]
    queue: np.ndarray
    queue_names: tuple[str, ...]
    queue_share: np.ndarray | None
    bin_share: np.ndarray
    edges: tuple[tuple[float, ...] | None, ...]
    patterns: tuple[tuple[str, ...], ...]
    default: int
    random_picks: int = 0
    seed: int = 0

    @property
    def n(self) -> int:
        """Number of groups G."""
        return len(self.names)

    @property
    def binned(self) -> bool:
        return any(e is not None for e in self.edges)

    # ---- construction ------------------------------------------------------------------------
    @classmethod
    def classes(cls, quotas: Sequence[float] | np.ndarray | None = None, random_picks: int = 0,
                seed: int = 0) -> SelectionGroups:
        """The four protein classes as groups, with optional class quotas (weights ``[4]``)."""
        q = None if quotas is None else np.asarray(quotas, float) / np.sum(quotas)
        return cls(names=CLASS_NAMES, queue=np.arange(N_CLASSES), queue_names=CLASS_NAMES,
                   queue_share=q, bin_share=np.ones(N_CLASSES), edges=(None,) * N_CLASSES,
                   patterns=((),) * N_CLASSES, default=-1, random_picks=int(random_picks),
                   seed=int(seed))

    @classmethod
    def from_queues(cls, cfg: QueuesConfig, random_picks: int = 0, seed: int = 0
                    ) -> SelectionGroups:
        """Groups of a queue configuration (one per queue, or one per bin of a binned queue)."""
        names, queue, bin_share, edges, patterns = [], [], [], [], []
        for qi, q in enumerate(cfg.queues):
            if q.bins is None:
                names.append(q.name)
                queue.append(qi)
                bin_share.append(1.0)
                edges.append(None)
            else:
                nb = len(q.bins.edges) - 1
                sh = np.ones(nb) if q.bins.shares is None else np.asarray(q.bins.shares, float)
                names += [f"{q.name}[{b}]" for b in range(nb)]
                queue += [qi] * nb
                bin_share += (sh / sh.sum()).tolist()
                edges.append(tuple(q.bins.edges))
            patterns.append(tuple(q.types))
        shares = np.array([q.share for q in cfg.queues], float)
        return cls(names=tuple(names), queue=np.array(queue, np.int64),
                   queue_names=tuple(q.name for q in cfg.queues),
                   queue_share=shares / shares.sum(), bin_share=np.array(bin_share),
                   edges=tuple(edges), patterns=tuple(patterns),
                   default=[q.name for q in cfg.queues].index(cfg.default),
                   random_picks=int(random_picks), seed=int(seed))

    @classmethod
    def from_config(cls, selector_cfg: object) -> SelectionGroups:
        """From the ``selector:`` section: ``queues`` if set, else the classes with
        ``class_quotas``; ``random_picks`` and ``random_seed`` either way."""
        rp = int(getattr(selector_cfg, "random_picks", 0) or 0)
        seed = int(getattr(selector_cfg, "random_seed", 0) or 0)
        queues = getattr(selector_cfg, "queues", None)
        if queues is not None:
            return cls.from_queues(queues, rp, seed)
        return cls.classes(getattr(selector_cfg, "class_quotas", None), rp, seed)

    # ---- classification ----------------------------------------------------------------------
    @property
    def n_queues(self) -> int:
        return len(self.queue_names)

    def first_group(self, q: int) -> int:
        """The group id of bin 0 of queue ``q``."""
        return int(np.flatnonzero(self.queue == q)[0])

    def queue_of_types(self, types: Sequence[str]) -> np.ndarray:
        """int64 ``[n]`` queue of each patch type (the first queue whose pattern matches, else
        the default queue)."""
        memo: dict[str, int] = {}
        out = np.empty(len(types), np.int64)
        for i, t in enumerate(types):
            if t not in memo:
                memo[t] = next((qi for qi, pats in enumerate(self.patterns)
                                if any(fnmatch.fnmatchcase(t, p) for p in pats)), self.default)
            out[i] = memo[t]
        return out

    def bin_of(self, q: int, values: np.ndarray) -> np.ndarray:
        """int64 ``[n]`` bin of each scalar in queue ``q`` (0 if the queue is not binned)."""
        edges = self.edges[q]
        v = np.asarray(values, np.float64)
        if edges is None:
            return np.zeros(len(v), np.int64)
        b = np.searchsorted(np.asarray(edges[1:-1]), v, side="right")
        return np.where(np.isnan(v), 0, b).astype(np.int64)

    def classify(self, y: np.ndarray, given_class: np.ndarray | None = None,
                 bin_value: np.ndarray | None = None) -> np.ndarray:
        """int8 ``[n]`` group of each patch.

        Args:
            y: int ``[n, 2]`` protein counts (n_ras, n_raf).
            given_class: int ``[n]`` the producer's class / queue (-1: none), or None. A value
                that is not a queue (>= number of queues) goes to the default queue.
            bin_value: float ``[n]`` the binning scalar (NaN: none), or None.
        """
        y = np.asarray(y).reshape(-1, 2)
        n = len(y)
        if self.default < 0:  # flat classes: the class of the counts unless the producer says
            from mummi_ml.patch.constants import patch_class

            q = patch_class(y).astype(np.int64) if n else np.zeros(0, np.int64)
            default = N_CLASSES - 1
        else:
            q = self.queue_of_types(patch_types(y))
            default = self.default
        if given_class is not None:
            g = np.asarray(given_class, np.int64)
            q = np.where(g == NO_CLASS, q, np.where((g >= 0) & (g < self.n_queues), g, default))
        out = np.empty(n, np.int64)
        vals = np.full(n, np.nan) if bin_value is None else np.asarray(bin_value, np.float64)
        for qi in np.unique(q):
            sel = q == qi
            out[sel] = self.first_group(int(qi)) + self.bin_of(int(qi), vals[sel])
        return out.astype(np.int8)

    def classify_batch(self, batch: PatchBatch) -> np.ndarray:
        """int8 ``[N]`` group of each patch of a batch (producer class and scalar if given)."""
        return self.classify(batch.y, batch.given_class, batch.bin_value)

    # ---- the group of the next pick ----------------------------------------------------------
    def allowed(self, counts: np.ndarray, available: np.ndarray) -> np.ndarray | None:
        """Groups the next pick may come from: bool ``[G]``, or None if none has candidates.

        Args:
            counts: int ``[G]`` picks so far per group; available: int ``[G]`` candidates.
        """
        has = np.asarray(available) > 0
        if not has.any():
            return None
        if self.queue_share is None:
            return has
        counts = np.asarray(counts, np.int64)
        qc = np.bincount(self.queue, weights=counts, minlength=self.n_queues)
        qhas = np.bincount(self.queue, weights=has, minlength=self.n_queues) > 0
        wanted = qhas & (self.queue_share > 0)
        if not wanted.any():
            return has
        deficit = np.where(wanted, self.queue_share * (qc.sum() + 1) - qc, -np.inf)
        q = int(np.argmax(deficit))
        in_q = (self.queue == q) & has
        wb = in_q & (self.bin_share > 0)
        out = np.zeros(self.n, dtype=bool)
        if not wb.any():
            out[in_q] = True
            return out
        bd = np.where(wb, self.bin_share * (qc[q] + 1) - counts, -np.inf)
        out[int(np.argmax(bd))] = True
        return out

    def is_random(self, counts: np.ndarray, allowed: np.ndarray) -> bool:
        """True if the next pick (from ``allowed`` groups) is a random one."""
        return self.random_picks > 0 and int(np.asarray(counts)[allowed].sum()) < self.random_picks
