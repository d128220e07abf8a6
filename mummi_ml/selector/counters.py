"""The selector's accounting of one rank: typed counters and the ids behind them.

Every field of :class:`Counters` is written to each checkpoint (the rank file and the manifest's
sums), restored from it and reported in ``status.json``: all three go through
:meth:`Counters.to_dict` / :meth:`Counters.from_dict` / :meth:`Counters.to_array`, so a counter
added here is checkpointed and reported without further edits. Accounting (summed over ranks)::

    ingested = accepted + quarantined
    accepted = pooled + selected + evicted
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields

import numpy as np

__all__ = ["Counters", "Ledger", "counter_names"]


@dataclass
class Counters:
    """Event counts of one rank (patches unless said otherwise).

    Attributes:
        ingested: patches that arrived (valid or not), less replayed copies.
        accepted: patches that passed validation and deduplication.
        quarantined: patches refused (with a reason code).
        evicted: accepted patches dropped as least novel (pool over capacity).
        quarantined_files: input files refused as a whole (unreadable; no patch counted).
        replayed: copies of replayed picks recognised as their own re-read (not ingested again).
        bad_messages: messages of another protocol received from a source (dropped).
    """

    ingested: int = 0
    accepted: int = 0
    quarantined: int = 0
    evicted: int = 0
    quarantined_files: int = 0
    replayed: int = 0
    bad_messages: int = 0

    def to_dict(self) -> dict[str, int]:
        """Every counter by name (checkpoint and status)."""
        return {k: int(v) for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict[str, int]) -> Counters:
        """Counters from a checkpoint; a counter it lacks (older checkpoints) counts from 0, a
        name this version does not know is ignored."""
        names = counter_names()
        return cls(**{k: int(v) for k, v in d.items() if k in names})

    def to_array(self) -> np.ndarray:
        """int64 ``[len(counter_names())]`` in field order (for reductions over ranks)."""
        return np.array([getattr(self, k) for k in counter_names()], dtype=np.int64)

    @classmethod
    def from_array(cls, a: np.ndarray) -> Counters:
        """Inverse of :meth:`to_array`."""
        return cls(**{k: int(v) for k, v in zip(counter_names(), a, strict=True)})

    def add(self, other: Counters) -> None:
        """Add ``other``'s counts to these."""
        for k in counter_names():
            setattr(self, k, getattr(self, k) + getattr(other, k))


def counter_names() -> tuple[str, ...]:
    """Names of the counters, in field order."""
    return tuple(f.name for f in fields(Counters))


def _u64() -> np.ndarray:
    return np.zeros(0, dtype=np.uint64)


@dataclass
class Ledger:
    """Counters of a rank and the ids behind the quarantined and evicted counts.

    Attributes:
        counters: the event counts.
        evicted_ids: uint64 ``[n_evicted]``.
        quarantined_ids: uint64 ``[n_q]``; quarantined_codes: int8 ``[n_q]`` (reason codes,
            :data:`mummi_ml.selector.ingest.QUARANTINE_CODES`).
    """

    counters: Counters = field(default_factory=Counters)
    evicted_ids: np.ndarray = field(default_factory=_u64)
    quarantined_ids: np.ndarray = field(default_factory=_u64)
    quarantined_codes: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int8))

    def quarantine(self, ids: np.ndarray, code: int) -> None:
        """Record patches refused with reason ``code``."""
        ids = np.asarray(ids, dtype=np.uint64)
        self.quarantined_ids = np.concatenate([self.quarantined_ids, ids])
        self.quarantined_codes = np.concatenate(
            [self.quarantined_codes, np.full(len(ids), code, np.int8)])
        self.counters.quarantined += len(ids)

    def evict(self, ids: np.ndarray) -> None:
        """Record accepted patches dropped from the pool."""
        self.evicted_ids = np.concatenate([self.evicted_ids, np.asarray(ids, np.uint64)])
        self.counters.evicted += len(ids)
