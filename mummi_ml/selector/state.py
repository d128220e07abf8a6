"""The whole selector state of one rank, owned by one object: :class:`SelectorState`.

It holds the candidate pool (embeddings and payload locations), the selected set, the accepted
ids, the :class:`~mummi_ml.selector.counters.Ledger` (counters, quarantined and evicted ids), the
keys of the inputs ingested since the last checkpoint and the payload store, and has the
explicit operations on them: :meth:`SelectorState.restore`, :meth:`~SelectorState.checkpoint`,
:meth:`~SelectorState.report` and :meth:`~SelectorState.replay_picks`. The file format is
:mod:`mummi_ml.selector.checkpoint`. A new checkpointed field goes into
:class:`~mummi_ml.selector.checkpoint.RankState` and the two conversions here.

The containers (pool, selected set, accepted ids, ledger, payload store) are changed in place,
never replaced: the greedy engine and the ingest hold references to them. Candidates and picks
carry their embeddings and the location of their payload (``src``, ``seg``, ``row``), so a new
embedding model is applied by re-reading the payloads and re-embedding
(:meth:`SelectorState.reembed`, into new arrays), then :meth:`SelectorState.switch` puts them in
place and :attr:`SelectorState.meta` names the new model (its ``history`` lists every version the
campaign used); the next checkpoint records it (see :mod:`mummi_ml.selector.swap`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from mummi_ml.errors import MummiMLError
from mummi_ml.selector import checkpoint as ck
from mummi_ml.selector.collectives import (
    allgather_rows,
    allreduce_max,
    allreduce_sum,
    barrier,
    rank_size,
)
from mummi_ml.selector.counters import Counters, Ledger, counter_names
from mummi_ml.selector.errors import CheckpointError
from mummi_ml.selector.idset import IdSet
from mummi_ml.selector.nn_search import NearestSelected
from mummi_ml.selector.payloads import PayloadStore
from mummi_ml.selector.pool import CandidatePool
from mummi_ml.selector.report import RateMeter, build_status
from mummi_ml.selector.selected import SelectedSet

__all__ = ["SelectorState", "StateMeta", "ModelVersion", "Reembedding", "COUNTERS"]

COUNTERS = counter_names()
"""Counters of a rank (:class:`~mummi_ml.selector.counters.Counters`'s fields), saved in its
checkpoint file and summed into the manifest and status.json."""


@dataclass(frozen=True)
class ModelVersion:
    """One embedding model the campaign used (``model_history`` of the checkpoint manifest).

    Attributes:
        version: the model's version; path: its directory ("" for a model-free embedding);
        time: when it was adopted (unix s; the start of the campaign for the first);
        n_selected: picks made before it was adopted; dim: its latent dimension d.
    """

    version: str
    path: str
    time: float
    n_selected: int
    dim: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelVersion:
        return cls(str(d["version"]), str(d.get("path", "")), float(d.get("time", 0.0)),
                   int(d.get("n_selected", 0)), int(d.get("dim", 0)))


@dataclass(frozen=True)
class StateMeta:
    """What the state was made with; a checkpoint made with other values is refused.

    Attributes:
        dim: embedding dimension d; kk: distances kept per candidate; model_version: the
        embedding's version; novelty: ``selector.novelty``; groups: selection group names;
        history: every model version the campaign used, oldest first (the last one is
        ``model_version``; empty until the service fills it in on start).
    """

    dim: int
    kk: int
    model_version: str
    novelty: str
    groups: tuple[str, ...]
    history: tuple[ModelVersion, ...] = ()

    def version_of_pick(self, seq: int) -> str:
        """The model version pick ``seq`` was made with (by the history's ``n_selected``)."""
        out = self.model_version
        for h in reversed(self.history):
            out = h.version
            if h.n_selected <= seq:
                break
        return out

    def check(self, where: Path, man: dict) -> None:
        """Raise CheckpointError if the manifest ``man`` was made with other values."""
        if man["model_version"] != self.model_version or int(man["dim"]) != self.dim:
            raise CheckpointError(
                f"{where}: made with embedding {man['model_version']} (d={man['dim']}), the "
                f"config gives {self.model_version} (d={self.dim}); use the same model or a new "
                "state_dir")
        if int(man["kk"]) != self.kk:
            raise CheckpointError(f"{where}: made with {man['kk']} neighbours per candidate, the "
                                  f"config gives {self.kk} (selector.novelty / knn_k changed)")
        if "groups" in man and list(man["groups"]) != list(self.groups):
            raise CheckpointError(f"{where}: made with selection groups {man['groups']}, the "
                                  f"config gives {list(self.groups)} (selector.queues changed); "
                                  "use a new state_dir")


@dataclass
class Reembedding:
    """A rank's state embedded by a new model, not yet in place (see
    :meth:`SelectorState.reembed`).

    Attributes:
        pool_z: float32 ``[n, d']`` the rank's candidates, pool order; pool_dk: float64
        ``[n, kk]`` their exact distances to the selected set; selected_z: float32 ``[m, d']``
        every pick, pick order (identical on every rank).
    """

    pool_z: np.ndarray
    pool_dk: np.ndarray
    selected_z: np.ndarray


@dataclass
class SelectorState:
    """One rank's selector state (see the module docstring). Build it with :meth:`restore`.

    Attributes:
        state_dir: the state directory (shared by all ranks); comm: communicator of the selector
            ranks (None: one rank); meta: what the state was made with.
        pool, selected, accepted, ledger, payloads: the data (see the classes).
        covered: keys of the inputs ingested since the last checkpoint (the next one covers them).
        restored_covered: keys the checkpoint restored from covered (all ranks' files).
        seq: sequence number of the next checkpoint.
        last_checkpoint: ``{"seq", "time"}`` of the newest checkpoint ({} before the first).
        checkpoint_clock: ``time.monotonic()`` of the last checkpoint (or of the start).
        meter: the ingest rate between reports.
        keep_pick_payloads: keep the payload segments of every pick, emitted or not (on with a
            hot swap, which re-embeds the picks from them).
    """

    state_dir: Path
    comm: Any
    meta: StateMeta
    pool: CandidatePool
    selected: SelectedSet
    accepted: IdSet
    ledger: Ledger
    payloads: PayloadStore
    covered: list[str] = field(default_factory=list)
    restored_covered: list[str] = field(default_factory=list)
    seq: int = 0
    last_checkpoint: dict = field(default_factory=dict)
    checkpoint_clock: float = field(default_factory=time.monotonic)
    meter: RateMeter = field(default_factory=RateMeter)
    keep_pick_payloads: bool = False

    @property
    def rank(self) -> int:
        return rank_size(self.comm)[0]

    @property
    def size(self) -> int:
        return rank_size(self.comm)[1]

    @property
    def counters(self) -> Counters:
        return self.ledger.counters

    # ---- restore -------------------------------------------------------------------------------
    @classmethod
    def restore(cls, state_dir: str | Path, meta: StateMeta, comm: Any = None) -> SelectorState:
        """This rank's share of the newest complete checkpoint, or an empty state if none.

        Raises:
            CheckpointError: the checkpoint was made with another embedding (version or
                dimension), another novelty definition, or other selection groups
                (checkpoints without the groups record are accepted); or it is unreadable.
        """
        state_dir = Path(state_dir).absolute()
        rank, size = rank_size(comm)
        found = ck.latest_checkpoint(state_dir)
        st, sel = None, None
        if found is not None:
            path, man = found
            meta.check(path, man)
            meta = replace(meta, history=tuple(
                ModelVersion.from_dict(h) for h in man.get("model_history", [])))
            st = ck.load_rank_state(path, man, rank, size)
            sel = ck.load_selected(path)
        root = state_dir / "payloads"
        next_seg = max([st.next_seg if st else 0] + [
            int(p.stem.split("-")[1]) + 1 for p in (root / f"rank-{rank:05d}").glob("seg-*.h5")])
        state = cls(
            state_dir=state_dir, comm=comm, meta=meta,
            pool=(CandidatePool.from_arrays(st.pool, meta.dim, meta.kk) if st
                  else CandidatePool(meta.dim, meta.kk)),
            selected=SelectedSet.from_arrays(sel[0], meta.dim) if sel else SelectedSet(meta.dim),
            accepted=IdSet(sel[1]) if sel else IdSet(),
            ledger=Ledger(Counters.from_dict(st.counters), st.evicted_ids, st.quarantined_ids,
                          st.quarantined_codes) if st else Ledger(),
            payloads=PayloadStore(root, rank, next_seg),
        )
        if found is not None:
            state.restored_covered = st.covered
            state.seq = int(found[1]["seq"]) + 1
            state.last_checkpoint = {"seq": state.seq - 1, "time": float(found[1]["time"])}
        return state

    def replay_picks(self, entries: list[dict]) -> int:
        """Apply picks of the picks log (``seq``-sorted entries from ``len(selected)`` on, made
        after the checkpoint restored from): take them out of the pool, append them to the
        selected set, unemitted. A pick whose patch the checkpoint did not hold yet was
        ingested and accepted before the crash: counted so (on rank 0), and it awaits its own
        copy (see :mod:`mummi_ml.selector.ingest`). Stops at the first entry that does not
        follow the selected set or was made with another model version. Returns the picks
        applied."""
        n = 0
        for e in entries:
            if e["seq"] != len(self.selected) or e.get(
                    "model_version", self.meta.model_version) != self.meta.model_version:
                break
            pid = np.array([e["id"]], np.uint64)
            self.pool.remove(np.flatnonzero(self.pool.ids == pid[0]))
            fresh = not self.accepted.contains(pid)[0]
            if fresh and self.rank == 0:
                self.ledger.counters.ingested += 1
                self.ledger.counters.accepted += 1
            self.accepted.add(pid)
            self.selected.append(np.array([e["z"]], np.float32), ids=pid, classes=[e["cls"]],
                                 novelty=[e["novelty"]], owner=[e["owner"]], src=[e["src"]],
                                 seg=[e["seg"]], row=[e["row"]], emitted=[False],
                                 awaiting_copy=[fresh])
            n += 1
        return n

    # ---- a new embedding model ------------------------------------------------------------------
    def _embed_locations(self, src: np.ndarray, seg: np.ndarray, row: np.ndarray,
                         embed: Callable[[np.ndarray], np.ndarray], batch: int) -> np.ndarray:
        """Embeddings (float32 ``[p, d']``) of the payloads at ``(src, seg, row)`` (``[p]``
        each), each segment read once, embedded ``batch`` patches at a time."""
        loc = np.stack([src, seg], 1).astype(np.int64).reshape(-1, 2)
        keys, inv = np.unique(loc, axis=0, return_inverse=True)
        inv = inv.reshape(-1)
        order = np.argsort(inv, kind="stable")
        bounds = np.searchsorted(inv[order], np.arange(len(keys) + 1))
        parts: list[np.ndarray] = []
        buf: list[np.ndarray] = []
        n_buf = 0

        def flush() -> None:
            nonlocal buf, n_buf
            if n_buf:
                parts.append(np.asarray(embed(np.concatenate(buf)), dtype=np.float32))
            buf, n_buf = [], 0

        for k, (a, b) in enumerate(keys):
            take = order[bounds[k]:bounds[k + 1]]
            x = self.payloads.read_rows(int(a), int(b), row[take]).x
            for lo in range(0, len(x), batch):
                buf.append(x[lo:lo + batch])
                n_buf += len(buf[-1])
                if n_buf >= batch:
                    flush()
        flush()
        z = np.concatenate(parts) if parts else np.zeros((0, 0), np.float32)
        out = np.empty_like(z)
        out[order] = z
        return out

    def reembed(self, embed: Callable[[np.ndarray], np.ndarray], dim: int, nn: NearestSelected,
                batch: int = 1024) -> tuple[Reembedding | None, str]:
        """Embed this rank's candidates and every pick again from their stored payloads, with
        ``embed`` (raw patches ``[p, 37, 37, 14]`` -> float32 ``[p, dim]``), into new arrays;
        the novelty of each candidate is recomputed exactly (``nn``, as the ingest of a fresh
        selector computes it). Collective: the picks are split over the ranks and gathered.
        Nothing is changed here (:meth:`switch` puts the result in place).

        Returns:
            ``(result, "")``, or ``(None, reason)`` on every rank if a payload could not be read
            or an embedding is not finite on any rank (``reason`` empty on ranks without one).
        """
        s, p = self.selected, self.pool
        mine = np.arange(self.rank, len(s), self.size)
        reason = ""
        sel_z = pool_z = np.zeros((0, dim), np.float32)
        try:
            if len(mine):
                sel_z = self._embed_locations(s.src[mine], s.seg[mine], s.row[mine], embed, batch)
            if len(p):
                pool_z = self._embed_locations(p.src, p.seg, p.row, embed, batch)
            if sel_z.shape[1] != dim or pool_z.shape[1] != dim:
                reason = f"the model embeds in {max(sel_z.shape[1], pool_z.shape[1])} " \
                         f"dimensions, its metric.json says {dim}"
            elif not (np.isfinite(sel_z).all() and np.isfinite(pool_z).all()):
                reason = "the new model gives a NaN or inf embedding for a stored patch"
        except (OSError, MummiMLError, KeyError, ValueError) as exc:
            reason = f"a stored payload could not be re-embedded ({exc})"
        if allreduce_max(self.comm, np.array([bool(reason)], np.int64))[0]:
            return None, reason
        got, _ = allgather_rows(self.comm, sel_z.reshape(-1, dim))
        where, _ = allgather_rows(self.comm, mine.astype(np.int64))
        selected_z = np.empty((len(s), dim), np.float32)
        selected_z[where] = got
        return Reembedding(pool_z, nn.query(pool_z, selected_z), selected_z), ""

    def switch(self, meta: StateMeta, new: Reembedding) -> None:
        """Put a re-embedding in place (pool, selected set, in place) and adopt ``meta``."""
        self.pool.set_embeddings(new.pool_z, new.pool_dk, len(self.selected))
        self.selected.set_embeddings(new.selected_z)
        self.meta = meta

    # ---- checkpoint ----------------------------------------------------------------------------
    def checkpoint(self, keep: int, extra_live: np.ndarray | None = None,
                   before_manifest: Callable[[], None] | None = None) -> list[str]:
        """Write checkpoint :attr:`seq` of every rank (collective), keep the ``keep`` newest,
        then delete the payload segments nothing refers to any more (nor ``extra_live``, int64
        ``[m, 2]`` (src, seg) rows of any rank, e.g. the closed loop's reservoir).
        ``before_manifest`` is called on every rank once every rank file is written, before the
        manifest (a crash point for tests).

        Returns:
            the input keys this checkpoint covers (to retire in their sources).
        """
        t = time.time()
        d = ck.checkpoint_dir(self.state_dir, self.seq)
        self.payloads.sync()  # the segments this checkpoint refers to are on disk before it
        led = self.ledger
        counters = led.counters.to_dict()
        ck.write_rank_state(d, self.rank, ck.RankState(
            pool=self.pool.to_arrays(), evicted_ids=led.evicted_ids,
            quarantined_ids=led.quarantined_ids, quarantined_codes=led.quarantined_codes,
            counters=counters, covered=list(self.covered), next_seg=self.payloads.next_seg))
        if self.rank == 0:
            ck.write_selected(d, self.selected.to_arrays(), self.accepted.to_array())
        totals = allreduce_sum(self.comm, np.append(led.counters.to_array(), len(self.pool)))
        barrier(self.comm)
        if before_manifest is not None:
            before_manifest()
        if self.rank == 0:
            m = self.meta
            ck.write_manifest(d, {
                "seq": self.seq, "n_ranks": self.size, "dim": m.dim, "kk": m.kk,
                "model_version": m.model_version, "novelty": m.novelty,
                "n_selected": len(self.selected), "groups": list(m.groups),
                "model_history": [h.to_dict() for h in m.history],
                "counters": {**Counters.from_array(totals[:-1]).to_dict(),
                             "pooled": int(totals[-1])},
            })
            ck.prune_checkpoints(self.state_dir, keep)
        barrier(self.comm)
        if not (d / "manifest.json").exists():
            raise CheckpointError(f"{d}: manifest missing after the checkpoint barrier "
                                  "(is state_dir on a file system shared by all ranks?)")
        self._collect_payloads(extra_live)
        covered, self.covered = self.covered, []
        self.last_checkpoint = {"seq": self.seq, "time": t}
        self.seq += 1
        self.checkpoint_clock = time.monotonic()
        return covered

    def _collect_payloads(self, extra_live: np.ndarray | None = None) -> None:
        """Delete payload segments no candidate, no unemitted pick and no ``extra_live`` row
        refers to (collective)."""
        s = self.selected
        locs = [np.stack([self.pool.src, self.pool.seg], 1).astype(np.int64)]
        if extra_live is not None:
            locs.append(np.asarray(extra_live, np.int64).reshape(-1, 2))
        if self.keep_pick_payloads:  # a model swap re-embeds every pick from its payload
            locs.append(np.stack([s.src, s.seg], 1).astype(np.int64))
        elif self.rank == 0:  # only rank 0 emits, so only its emitted flags are current
            locs.append(np.stack([s.src, s.seg], 1)[~s.emitted].astype(np.int64))
        cat = np.concatenate(locs)
        live, _ = allgather_rows(self.comm, np.unique(cat, axis=0).reshape(-1, 2))
        self.payloads.collect_garbage({(int(a), int(b)) for a, b in live})

    # ---- report --------------------------------------------------------------------------------
    def report(self, label: str, jobs: dict[str, int] | None, uptime_s: float,
               extra: dict | None = None) -> dict:
        """Counters summed over ranks (collective); rank 0 also writes status.json and logs a
        line (see :func:`mummi_ml.selector.report.build_status`). Returns the sums (rank > 0) or
        the whole status (rank 0)."""
        local = np.append(self.ledger.counters.to_array(), [len(self.pool), self.pool.nbytes])
        tot = allreduce_sum(self.comm, local.astype(np.int64))
        sums = {**Counters.from_array(tot[:-2]).to_dict(), "pooled": int(tot[-2]),
                "pool_bytes": int(tot[-1])}
        if self.rank != 0:
            return sums
        return build_status(
            sums, self.meter, label=label, jobs=jobs or {}, uptime_s=uptime_s,
            n_ranks=self.size, selected=len(self.selected),
            bytes_per_candidate=self.pool.bytes_per_candidate,
            model_version=self.meta.model_version, novelty=self.meta.novelty,
            model_versions=[h.to_dict() for h in self.meta.history],
            last_checkpoint=self.last_checkpoint, state_dir=self.state_dir,
            since=self.checkpoint_clock, extra=extra)
