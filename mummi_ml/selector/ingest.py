"""Ingest of patch batches into a rank's candidate pool: validate, deduplicate over all ranks,
embed, guard the domain, score against the selected set, store the payload, evict the least
novel.

:meth:`Ingestor.step` is collective (one ``Allgatherv`` of the new ids per call), so a patch id
seen on any rank is a duplicate everywhere: the set of accepted ids is replicated on every rank.

Accounting (counters summed over ranks; ``status.json`` and every checkpoint manifest)::

    ingested = accepted + quarantined
    accepted = pooled + selected + evicted

A patch that arrives is *ingested*, then either *quarantined* (with a reason code, below) or
*accepted*; an accepted patch is in a pool, selected, or evicted. A copy of a patch whose id was
accepted before is a duplicate (code 2), also when that patch was selected, with one exception:
a pick replayed from the picks log after a restart that the checkpoint did not hold yet (see
:attr:`SelectedSet.awaiting_copy`) was counted as ingested and accepted when it was replayed, and
the first copy of it that arrives (the re-read of its own spool file) is a *replay*: counted in
``replayed`` only, neither ingested again nor quarantined.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from mummi_ml.errors import PatchValidationError
from mummi_ml.jsonutil import json_dumps_strict
from mummi_ml.patch import PatchBatch, check_patches
from mummi_ml.patch.validate import NEGATIVE_COUNT, NONFINITE, RAF_EXCEEDS_RAS
from mummi_ml.selector.collectives import allgather_rows, rank_size
from mummi_ml.selector.counters import Ledger
from mummi_ml.selector.distance import score
from mummi_ml.selector.greedy import LazyGreedy
from mummi_ml.selector.idset import IdSet
from mummi_ml.selector.nn_search import NearestSelected
from mummi_ml.selector.ood import DomainGuard
from mummi_ml.selector.payloads import PayloadStore

__all__ = ["Ingestor", "QUARANTINE_CODES"]

log = logging.getLogger("mummi_ml.selector")

QUARANTINE_CODES = {1: "invalid patch", 2: "duplicate id", 3: "malformed batch",
                    4: "non-finite embedding", 5: "unphysical patch", 6: "out of domain"}
"""Reason codes stored with quarantined patch ids (details are in the quarantine log):
1 non-finite values or inconsistent protein counts, 2 an id accepted before (also a re-sent
copy of a selected patch), 3 a batch whose arrays have the wrong shape or dtype, 4 an embedding
with NaN/inf, 5 concentrations outside the physical range or more proteins than fit
(:mod:`mummi_ml.patch.validate`), 6 an embedding far outside the model's training domain
(:mod:`mummi_ml.selector.ood`)."""

_INVALID_CODES = {NONFINITE: 1, NEGATIVE_COUNT: 1, RAF_EXCEEDS_RAS: 1}  # else 5 (unphysical)

Embedder = Callable[[np.ndarray], np.ndarray]


class Ingestor:
    """Brings batches into the rank's pool, counting into the rank's :class:`Ledger`.

    Args:
        embed: ``x [n, 37, 37, 14] float32 -> z [n, d] float32`` (the metric, or a stand-in).
        engine: the rank's :class:`LazyGreedy` (its pool and selected set are used).
        payloads: where patch payloads go.
        accepted: ids accepted on any rank so far (replicated).
        nn: nearest-selected search for new candidates.
        capacity: candidates kept by this rank.
        embed_batch_size: patches per ``embed`` call.
        quarantine_log: JSON-lines file of quarantine details (appended), or None.
        comm: communicator of the selector ranks (None: one rank).
        domain_guard: the out-of-domain guard, or None (no guard).
        ledger: where counts and quarantined/evicted ids go (default: a new one).
        on_accept: called with ``(z [n, d], batch, payload locations int64 [n, 3])`` for every
            accepted batch (the closed loop's drift monitor and reservoir), or None.
    """

    def __init__(
        self,
        embed: Embedder,
        engine: LazyGreedy,
        payloads: PayloadStore,
        accepted: IdSet,
        nn: NearestSelected,
        capacity: int,
        embed_batch_size: int = 1024,
        quarantine_log: str | Path | None = None,
        comm: Any = None,
        domain_guard: DomainGuard | None = None,
        ledger: Ledger | None = None,
        on_accept: Callable[[np.ndarray, PatchBatch, np.ndarray], None] | None = None,
    ):
        self.embed, self.engine, self.payloads = embed, engine, payloads
        self.accepted, self.nn, self.capacity = accepted, nn, int(capacity)
        self.embed_batch_size = int(embed_batch_size)
        self.quarantine_log = None if quarantine_log is None else Path(quarantine_log)
        self.comm = comm
        self.domain_guard = domain_guard
        self.rank, _ = rank_size(comm)
        self.ledger = ledger if ledger is not None else Ledger()
        self.seconds = 0.0  # wall time spent in step()
        self.on_accept = on_accept

    @property
    def evicted_ids(self) -> np.ndarray:
        """uint64 ids evicted by this rank (the ledger's)."""
        return self.ledger.evicted_ids

    @property
    def quarantined_ids(self) -> np.ndarray:
        """uint64 ids quarantined by this rank (the ledger's)."""
        return self.ledger.quarantined_ids

    @property
    def quarantined_codes(self) -> np.ndarray:
        """int8 reason codes of :attr:`quarantined_ids`."""
        return self.ledger.quarantined_codes

    @property
    def pool(self):
        return self.engine.pool

    def _quarantine(self, ids: np.ndarray, code: int, details: list[str], origin: str) -> None:
        ids = np.asarray(ids, dtype=np.uint64)
        if len(ids) == 0:
            return
        self.ledger.quarantine(ids, code)
        log.warning("rank %d: quarantined %d patches from %s: %s (e.g. %s)", self.rank, len(ids),
                    origin, QUARANTINE_CODES[code], details[0] if details else "")
        if self.quarantine_log is not None:
            with open(self.quarantine_log, "a") as fh:
                for i, pid in enumerate(ids.tolist()):
                    why = details[i] if i < len(details) else QUARANTINE_CODES[code]
                    fh.write(json_dumps_strict({"id": pid, "code": code, "reason": why,
                                                "origin": origin, "time": time.time()}) + "\n")

    def _validate(self, batch: PatchBatch, origin: str) -> PatchBatch:
        """The valid, unique-within-batch patches of a batch (the rest quarantined)."""
        self.ledger.counters.ingested += len(batch)
        try:
            check = check_patches(batch.x, batch.y)
        except PatchValidationError as exc:
            self._quarantine(np.asarray(batch.ids, np.uint64), 3, [str(exc)], origin)
            return batch.subset(np.zeros(0, dtype=np.int64))
        bad = check.bad
        if bad.any():
            codes = np.array([_INVALID_CODES.get(int(p), 5) for p in check.problem[bad]])
            ids_bad = batch.ids[bad]
            for code in (1, 5):
                sel = codes == code
                if sel.any():
                    self._quarantine(ids_bad[sel], code,
                                     [r for r, k in zip(check.reasons, sel, strict=True) if k],
                                     origin)
        good = np.flatnonzero(~bad)
        ids = batch.ids[good]
        _, first = np.unique(ids, return_index=True)
        dup = np.ones(len(ids), dtype=bool)
        dup[first] = False
        if dup.any():
            self._quarantine(ids[dup], 2, [f"id {i} repeated within {origin}"
                                           for i in ids[dup].tolist()], origin)
        keep = good[~dup]
        return batch if len(keep) == len(batch) else batch.subset(keep)

    def step(self, batches: list[tuple[PatchBatch, str]]) -> int:
        """Ingest this rank's new batches (``(batch, origin)``, possibly none). Collective.

        Returns:
            Candidates added to this rank's pool.
        """
        t0 = time.perf_counter()
        valid = [(self._validate(b, o), o) for b, o in batches]
        mine = (np.concatenate([b.ids for b, _ in valid]) if valid
                else np.zeros(0, np.uint64)).astype(np.uint64)
        gathered, counts = allgather_rows(self.comm, mine)
        offset = int(counts[: self.rank].sum())
        s = self.engine.selected
        _, first = np.unique(gathered, return_index=True)
        repeat = np.ones(len(gathered), dtype=bool)
        repeat[first] = False
        # the first copy of a replayed pick that the restart's checkpoint did not hold
        replay = np.zeros(len(gathered), dtype=bool)
        awaiting = s.awaiting()
        if len(awaiting):
            replay[first] = np.isin(gathered[first], awaiting)
            s.copy_arrived(gathered[replay])  # same on every rank: gathered is replicated
        dup = (self.accepted.contains(gathered) | repeat) & ~replay
        self.accepted.add(gathered[~dup & ~replay])
        my_dup = dup[offset : offset + len(mine)]
        my_replay = replay[offset : offset + len(mine)]
        added, pos = 0, 0
        for b, origin in valid:
            d, r = my_dup[pos : pos + len(b)], my_replay[pos : pos + len(b)]
            pos += len(b)
            if r.any():  # counted as ingested and accepted when the pick was replayed
                n = int(r.sum())
                self.ledger.counters.replayed += n
                self.ledger.counters.ingested -= n
            if d.any():
                picked = np.isin(b.ids[d], s.ids)
                why = [f"id {i} already selected (a re-sent copy)" if p else f"id {i} already seen"
                       for i, p in zip(b.ids[d].tolist(), picked.tolist(), strict=True)]
                self._quarantine(b.ids[d], 2, why, origin)
            if d.any() or r.any():
                b = b.subset(np.flatnonzero(~(d | r)))
            if len(b):
                added += self._add(b, origin)
        self._evict()
        self.seconds += time.perf_counter() - t0
        return added

    def _add(self, b: PatchBatch, origin: str = "") -> int:
        z = np.concatenate([
            np.asarray(self.embed(b.x[lo : lo + self.embed_batch_size]), dtype=np.float32)
            for lo in range(0, len(b), self.embed_batch_size)
        ])
        bad = ~np.isfinite(z).all(axis=1)  # e.g. finite but huge concentrations overflow
        if bad.any():
            self._quarantine(b.ids[bad], 4, [f"id {i}: embedding has NaN or inf"
                                             for i in b.ids[bad].tolist()], origin)
            keep = np.flatnonzero(~bad)
            b, z = b.subset(keep), z[keep]
            if len(b) == 0:
                return 0
        if self.domain_guard is not None:
            far, dist = self.domain_guard.check(z)
            if far.any():
                thr = self.domain_guard.threshold
                self._quarantine(b.ids[far], 6, [
                    f"id {i}: embedding {r:.3g} x the training q99 distance from the training "
                    f"centroid (> {thr:g})" for i, r in zip(b.ids[far].tolist(), dist[far].tolist(),
                                                            strict=True)], origin)
                keep = np.flatnonzero(~far)
                b, z = b.subset(keep), z[keep]
                if len(b) == 0:
                    return 0
        s = self.engine.selected
        dk = self.nn.query(z, s.z)
        groups = self.engine.groups.classify_batch(b)
        # the payload carries the queue the selector gave it (to job dirs and handoff records)
        b = replace(b, given_class=self.engine.groups.queue[groups].astype(np.int16))
        src, seg, rows = self.payloads.put(b)
        self.pool.add(z, dk, ids=b.ids, classes=groups,
                      seen=np.full(len(b), len(s), np.int64), src=src, seg=seg, row=rows)
        self.ledger.counters.accepted += len(b)
        if self.on_accept is not None:
            loc = np.column_stack([np.full(len(b), src), np.full(len(b), seg), rows])
            self.on_accept(z, b, loc.astype(np.int64))
        return len(b)

    def _evict(self) -> None:
        p = self.pool
        extra = len(p) - self.capacity
        if extra <= 0:
            return
        self.engine.refresh_all()  # exact novelty: evict the truly least novel
        s = score(p.dk, len(self.engine.selected))
        kth = np.partition(s, extra - 1)[extra - 1]
        cand = np.flatnonzero(s <= kth)  # the extra least novel, and ties at the boundary
        order = np.lexsort((np.iinfo(np.uint64).max - p.ids[cand], s[cand]))  # then large id
        out = cand[order[:extra]]
        ids = p.ids[out].copy()
        p.remove(out)
        self.ledger.evict(ids)
        log.info("rank %d: evicted %d least novel candidates (capacity %d; novelty <= %.4g)",
                 self.rank, len(ids), self.capacity, float(s[out].max()))
