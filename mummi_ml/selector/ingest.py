"""Ingest of patch batches into a rank's candidate pool: validate, deduplicate over all ranks,
embed, score against the selected set, store the payload, evict the least novel.

:meth:`Ingestor.step` is collective (one ``Allgatherv`` of the new ids per call), so a patch id
seen on any rank is a duplicate everywhere: the set of accepted ids is replicated on every rank.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from mummi_ml.errors import PatchValidationError
from mummi_ml.patch import PatchBatch, find_invalid
from mummi_ml.selector.collectives import allgather_rows, rank_size
from mummi_ml.selector.distance import score
from mummi_ml.selector.greedy import LazyGreedy
from mummi_ml.selector.idset import IdSet
from mummi_ml.selector.nn_search import NearestSelected
from mummi_ml.selector.payloads import PayloadStore

__all__ = ["Ingestor", "QUARANTINE_CODES"]

log = logging.getLogger("mummi_ml.selector")

QUARANTINE_CODES = {1: "invalid patch", 2: "duplicate id", 3: "malformed batch",
                    4: "non-finite embedding"}
"""Reason codes stored with quarantined patch ids (details are in the quarantine log)."""

Embedder = Callable[[np.ndarray], np.ndarray]


class Ingestor:
    """Brings batches into the rank's pool. Counters and id records are plain attributes.

    Args:
        embed: ``x [n, 37, 37, 14] float32 -> z [n, d] float32`` (the metric, or a stand-in).
        engine: the rank's :class:`LazyGreedy` (its pool and selected set are used).
        payloads: where patch payloads go.
        accepted: ids accepted on any rank so far (replicated).
        nn: nearest-selected search for new candidates.
        capacity: candidates kept by this rank.
        embed_batch_size: patches per ``embed`` call.
        quarantine_log: JSON-lines file of quarantine details (appended), or None.
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
    ):
        self.embed, self.engine, self.payloads = embed, engine, payloads
        self.accepted, self.nn, self.capacity = accepted, nn, int(capacity)
        self.embed_batch_size = int(embed_batch_size)
        self.quarantine_log = None if quarantine_log is None else Path(quarantine_log)
        self.comm = comm
        self.rank, _ = rank_size(comm)
        self.counters = {"ingested": 0, "accepted": 0, "quarantined": 0, "evicted": 0,
                         "quarantined_files": 0}
        self.quarantined_ids = np.zeros(0, dtype=np.uint64)
        self.quarantined_codes = np.zeros(0, dtype=np.int8)
        self.evicted_ids = np.zeros(0, dtype=np.uint64)
        self.seconds = 0.0  # wall time spent in step()

    @property
    def pool(self):
        return self.engine.pool

    def _quarantine(self, ids: np.ndarray, code: int, details: list[str], origin: str) -> None:
        ids = np.asarray(ids, dtype=np.uint64)
        if len(ids) == 0:
            return
        self.quarantined_ids = np.concatenate([self.quarantined_ids, ids])
        self.quarantined_codes = np.concatenate(
            [self.quarantined_codes, np.full(len(ids), code, np.int8)]
        )
        self.counters["quarantined"] += len(ids)
        log.warning("rank %d: quarantined %d patches from %s: %s (e.g. %s)", self.rank, len(ids),
                    origin, QUARANTINE_CODES[code], details[0] if details else "")
        if self.quarantine_log is not None:
            with open(self.quarantine_log, "a") as fh:
                for i, pid in enumerate(ids.tolist()):
                    why = details[i] if i < len(details) else QUARANTINE_CODES[code]
                    fh.write(json.dumps({"id": pid, "code": code, "reason": why,
                                         "origin": origin, "time": time.time()}) + "\n")

    def _validate(self, batch: PatchBatch, origin: str) -> PatchBatch:
        """The valid, unique-within-batch patches of a batch (the rest quarantined)."""
        self.counters["ingested"] += len(batch)
        try:
            bad, reasons = find_invalid(batch.x, batch.y)
        except PatchValidationError as exc:
            self._quarantine(np.asarray(batch.ids, np.uint64), 3, [str(exc)], origin)
            return batch.subset(np.zeros(0, dtype=np.int64))
        if bad.any():
            self._quarantine(batch.ids[bad], 1, reasons, origin)
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
        dup = self.accepted.contains(gathered)
        _, first = np.unique(gathered, return_index=True)
        repeat = np.ones(len(gathered), dtype=bool)
        repeat[first] = False
        dup |= repeat
        self.accepted.add(gathered[~dup])
        my_dup = dup[offset : offset + len(mine)]
        added, pos = 0, 0
        for b, origin in valid:
            d = my_dup[pos : pos + len(b)]
            pos += len(b)
            if d.any():
                # a pick replayed from the picks log whose file is ingested again: not an error
                known = d & np.isin(b.ids, self.engine.selected.ids)
                self.counters["replayed"] = self.counters.get("replayed", 0) + int(known.sum())
                q = d & ~known
                self._quarantine(b.ids[q], 2, [f"id {i} already seen" for i in b.ids[q].tolist()],
                                 origin)
                b = b.subset(np.flatnonzero(~d))
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
        s = self.engine.selected
        dk = self.nn.query(z, s.z)
        groups = self.engine.groups.classify_batch(b)
        # the payload carries the queue the selector gave it (to job dirs and handoff records)
        b = replace(b, given_class=self.engine.groups.queue[groups].astype(np.int16))
        src, seg, rows = self.payloads.put(b)
        self.pool.add(z, dk, ids=b.ids, classes=groups,
                      seen=np.full(len(b), len(s), np.int64), src=src, seg=seg, row=rows)
        self.counters["accepted"] += len(b)
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
        self.evicted_ids = np.concatenate([self.evicted_ids, ids])
        self.counters["evicted"] += len(ids)
        log.info("rank %d: evicted %d least novel candidates (capacity %d; novelty <= %.4g)",
                 self.rank, len(ids), self.capacity, float(s[out].max()))
