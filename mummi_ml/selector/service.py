"""The selector service: ingest from the sources, keep the distributed pool, pick when MD slots
free up, emit jobs (rank 0), checkpoint, report. Every loop iteration is collective over the
selector ranks; decisions (stop, checkpoint, report) are agreed by one ``Allreduce``.
"""

from __future__ import annotations

import logging
import signal
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from mummi_ml.durable import append_jsonl
from mummi_ml.errors import MummiMLError
from mummi_ml.selector.collectives import allreduce_max, bcast_int, rank_size
from mummi_ml.selector.embedder import Embedding, make_embedding
from mummi_ml.selector.greedy import LazyGreedy
from mummi_ml.selector.groups import SelectionGroups
from mummi_ml.selector.idset import IdSet
from mummi_ml.selector.ingest import Ingestor
from mummi_ml.selector.live_weights import publish_weights
from mummi_ml.selector.loop import ClosedLoop
from mummi_ml.selector.nn_search import NearestSelected
from mummi_ml.selector.ood import make_domain_guard
from mummi_ml.selector.payloads import PayloadStore
from mummi_ml.selector.picks_log import PicksLog
from mummi_ml.selector.pool import CandidatePool
from mummi_ml.selector.selected import SelectedSet
from mummi_ml.selector.source import PatchSource, Poll, open_sources
from mummi_ml.selector.state import ModelVersion, SelectorState, StateMeta
from mummi_ml.selector.swap import ModelSwapper, resolve_restart_model

__all__ = ["SelectorService"]

log = logging.getLogger("mummi_ml.selector")
_STOP, _CKPT, _REPORT, _INPUT, _OPEN = range(5)
MAX_EMIT_ATTEMPTS = 5
"""Attempts to emit a pick (read its payload, build its job) before it is given up."""
EMIT_FAILED_LOG = "emit_failed.jsonl"
"""Picks whose job could not be built (JSON lines in the state directory)."""
STOP_FILE = "STOP"
"""``STATE_DIR/STOP``: when it exists the service checkpoints and exits 0 (like SIGTERM), and the
batch chains in ``jobs/`` start no further link. Remove it before starting the selector again."""


def _append_line(path: Path, record: dict) -> None:
    append_jsonl(path, record, fsync=True)


class SelectorService:
    """The long-running selector of one rank: composes the sources, the state
    (:class:`~mummi_ml.selector.state.SelectorState`), the ingest, the greedy engine and, on
    rank 0, the job emitter.

    Args:
        cfg: the whole :class:`mummi_ml.config.Config` (``selector:`` and ``jobs:`` are used).
        comm: communicator of the selector ranks (None: one rank).
        embedding: the embedding (default: from the config; injected in tests).
        emitter_factory: ``state_dir -> emitter`` for rank 0 (default: the configured backend
            with :class:`mummi_ml.backends.JobEmitter`).
        sources: the sources to poll (default: :func:`~mummi_ml.selector.source.open_sources`
            of the config, without an MPMD layout).
    """

    def __init__(
        self,
        cfg: Any,
        comm: Any = None,
        embedding: Embedding | None = None,
        emitter_factory: Callable[[Path], Any] | None = None,
        sources: list[PatchSource] | None = None,
    ):
        self.cfg, self.s = cfg, cfg.selector
        self.comm = comm
        self.rank, self.size = rank_size(comm)
        self.state_dir = Path(self.s.state_dir).absolute()
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.emb = embedding or make_embedding(self.s)
        if embedding is None:  # after a hot swap the checkpoint names a newer model
            self.emb = resolve_restart_model(self.state_dir, self.s, self.emb)
        self.kk = self.s.knn_k if self.s.novelty == "mean_knn" else 1
        self._stop = self._ckpt_now = False
        self.t_start = time.time()
        self._last_report = 0.0
        groups = SelectionGroups.from_config(self.s)
        self.state = SelectorState.restore(self.state_dir, StateMeta(
            dim=self.emb.dim, kk=self.kk, model_version=self.emb.version,
            novelty=self.s.novelty, groups=tuple(groups.names)), comm)
        if not self.state.meta.history:  # the campaign's first model
            self.state.meta = replace(self.state.meta, history=(ModelVersion(
                self.emb.version, str(Path(self.s.model_dir).absolute()) if
                self.s.model_dir and embedding is None else "", time.time(), 0, self.emb.dim),))
        self.state.keep_pick_payloads = self.s.model_updates_dir is not None
        # closed loop (drift monitor, reservoir, snapshots): mummi_ml.selector.loop
        # (on the model in use: after a hot swap and a restart, the swapped-in one)
        self.loop = ClosedLoop(cfg, self.state, self.emb.embed, self.emb.version,
                               model_dir=self.state.meta.history[-1].path or None)
        self.engine = LazyGreedy(self.state.pool, self.state.selected, self.comm,
                                 self.s.frontier_size, groups=groups)
        self.ingestor = Ingestor(
            self.emb.embed, self.engine, self.state.payloads, self.state.accepted,
            NearestSelected(self.kk, self.s.nn_backend), self.s.capacity_per_rank,
            self.s.embed_batch_size, self.state_dir / f"quarantine-rank-{self.rank:05d}.jsonl",
            self.comm, make_domain_guard(self.s, self.emb), ledger=self.state.ledger,
            on_accept=self.loop.on_accept,
        )
        self.sources = (sources if sources is not None
                        else open_sources(self.s, self.rank, self.size))
        for src in self.sources:
            src.recover(self.state.restored_covered)
        self._emit_failures: dict[int, int] = {}  # pick id -> failed emit attempts
        self.emitter = None
        if self.rank == 0:
            self.emitter = (emitter_factory or self._default_emitter)(self.state_dir)
            self.emitter.recover()
        self.picks_log = PicksLog(self.state_dir / "picks.jsonl")
        if self.rank == 0:
            self.picks_log.repair()
        self._replay_picks()
        self.swapper = None
        if self.s.model_updates_dir is not None:
            self.swapper = ModelSwapper(self.s, self.state, self.picks_log, self._adopt,
                                        lambda hook: self.checkpoint(hook))
            self.swapper.record_missing_swaps()

    # ---- the state's parts (read-only views) ---------------------------------------------------
    @property
    def pool(self) -> CandidatePool:
        return self.state.pool

    @property
    def selected(self) -> SelectedSet:
        return self.state.selected

    @property
    def accepted(self) -> IdSet:
        return self.state.accepted

    @property
    def payloads(self) -> PayloadStore:
        return self.state.payloads

    @property
    def ckpt_seq(self) -> int:
        """Sequence number of the next checkpoint."""
        return self.state.seq

    @property
    def last_checkpoint(self) -> dict:
        return self.state.last_checkpoint

    # ---- set-up --------------------------------------------------------------------------------
    def _default_emitter(self, state_dir: Path) -> Any:
        from mummi_ml.backends import JobEmitter, make_backend

        return JobEmitter(make_backend(self.cfg.jobs, state_dir), self.cfg.jobs, state_dir)

    def _replay_picks(self) -> None:
        """Apply picks logged after the checkpoint we restarted from (a crash between pick and
        checkpoint): remove them from the pools, add them to the selected set, unemitted."""
        m = len(self.state.selected)
        logged = self.picks_log.read(self.emb.dim, self.emb.version)
        entries = sorted((e for e in logged if e["seq"] >= m), key=lambda e: e["seq"])
        n = self.state.replay_picks(entries)
        if n < len(entries):
            log.error("picks log: entry %d does not follow %d; ignoring the rest",
                      entries[n]["seq"], len(self.state.selected))
        if entries:
            log.info("rank %d: replayed %d picks from the picks log", self.rank, len(entries))

    def _adopt(self, emb: Embedding) -> None:
        """Use ``emb`` from now on (a hot swap): for ingest, the domain guard and job tags."""
        self.emb = emb
        self.ingestor.embed = emb.embed
        self.ingestor.domain_guard = make_domain_guard(self.s, emb)
        self.ingestor.nn = NearestSelected(self.kk, self.s.nn_backend)  # its index is stale
        if self.loop.model_dir is not None:  # later snapshots fine-tune the model now in use
            self.loop.adopt(self.state.meta.history[-1].path, emb.version, emb.embed)

    # ---- signals -------------------------------------------------------------------------------
    def install_signal_handlers(self) -> None:
        """SIGTERM: checkpoint and stop; SIGUSR1: checkpoint and go on."""

        def on_term(signum, frame):
            self._stop = self._ckpt_now = True

        def on_usr1(signum, frame):
            self._ckpt_now = True

        signal.signal(signal.SIGTERM, on_term)
        signal.signal(signal.SIGUSR1, on_usr1)

    # ---- one iteration -------------------------------------------------------------------------
    def _poll_sources(self) -> list:
        """``(batch, origin)`` of every source's new arrivals; their keys are recorded for the
        next checkpoint, refused inputs counted."""
        got = Poll()
        for src in self.sources:
            got.extend(src.poll())
        self.state.counters.add(got.counts)
        self.state.covered += [a.key for a in got.arrivals if a.key is not None]
        return [(a.batch, a.origin) for a in got.arrivals]

    def _sources_open(self) -> bool:
        return any(src.is_open() for src in self.sources)

    def _emit_pending(self) -> None:
        """Rank 0: emit every pick without a job while slots are free (idempotent per patch)."""
        s, em = self.selected, self.emitter
        for q in np.flatnonzero(~s.emitted):
            pid = int(s.ids[q])
            if not em.emitted(pid):
                if em.free_slots() <= 0:
                    return
                try:
                    patch = self.payloads.get(int(s.src[q]), int(s.seg[q]), int(s.row[q]))
                    em.emit(patch, float(s.novelty[q]),
                            self.state.meta.version_of_pick(int(q)))
                except (MummiMLError, OSError, ValueError) as exc:
                    n = self._emit_failures.get(pid, 0) + 1
                    self._emit_failures[pid] = n
                    if n < MAX_EMIT_ATTEMPTS:
                        log.error("emit of patch %d failed: %s (attempt %d of %d, will retry)",
                                  pid, exc, n, MAX_EMIT_ATTEMPTS)
                        return
                    # give up on this pick so the picks after it are not held back forever
                    log.error("emit of patch %d failed %d times, recorded in %s: %s",
                              pid, n, EMIT_FAILED_LOG, exc)
                    _append_line(self.state_dir / EMIT_FAILED_LOG,
                                 {"id": pid, "attempts": n, "reason": str(exc),
                                  "time": time.time()})
            s.emitted[q] = True

    def _free_slots(self) -> int:
        free = 0
        if self.rank == 0:
            self.emitter.poll()
            self._emit_pending()
            free = self.emitter.free_slots() - int((~self.selected.emitted).sum())
        return bcast_int(self.comm, free)

    def select(self, k: int) -> int:
        """Pick ``k`` patches over all ranks, log them, emit their jobs (rank 0). Collective."""
        picks = self.engine.select(k)
        if picks and self.rank == 0:
            m = len(self.selected)
            self.picks_log.append(picks, self.selected.z[m - len(picks):],
                                  self.state.meta.model_version)
            for p in picks:
                log.info("pick #%d: patch %d (class %d, novelty %.4g, rank %d)",
                         p.seq, p.id, p.cls, p.novelty, p.owner)
            self._emit_pending()
        return len(picks)

    def checkpoint(self, before_manifest: Callable[[], None] | None = None) -> None:
        """Write a checkpoint of every rank's state (collective); then retire the inputs it
        covers and the payload segments no longer referenced. ``before_manifest``: see
        :meth:`SelectorState.checkpoint`."""
        t = time.time()
        publish_weights(self.state)  # before the payloads of picks may be deleted below
        self.loop.checkpoint(self.state.seq)
        covered = self.state.checkpoint(self.s.keep_checkpoints, self.loop.live_segments(),
                                        before_manifest)
        for src in self.sources:
            src.retire(covered)
        log.info("rank %d: checkpoint %d written in %.2f s", self.rank, self.state.seq - 1,
                 time.time() - t)

    def report(self, state: str = "running") -> dict:
        """Global counters (collective); rank 0 writes status.json and logs one line."""
        jobs = self.emitter.counts() if self.emitter is not None else {}
        return self.state.report(state, jobs, time.time() - self.t_start,
                                 self.loop.status() if self.rank == 0 else None)

    def stop_requested(self) -> bool:
        """This rank's view of "stop": SIGTERM arrived or ``STATE_DIR/STOP`` exists (read by
        rank 0 only; the decision is always agreed through an ``Allreduce``)."""
        if self._stop:
            return True
        if self.rank == 0 and (self.state_dir / STOP_FILE).exists():
            log.info("%s exists: checkpointing and stopping", self.state_dir / STOP_FILE)
            self._stop = True
        return self._stop

    def step(self, once: bool = False) -> np.ndarray:
        """One collective iteration; returns the agreed flags."""
        batches = self._poll_sources()
        self.ingestor.step(batches)
        if self.swapper is not None and self.swapper.step():
            self.report()  # status.json names the new model at once
        now = time.monotonic()
        flags = np.zeros(5, dtype=np.int64)
        flags[_STOP] = self.stop_requested()
        flags[_CKPT] = self._ckpt_now or (
            self.rank == 0 and now - self.state.checkpoint_clock >= self.s.checkpoint_interval_s)
        flags[_REPORT] = self.rank == 0 and now - self._last_report >= self.s.status_interval_s
        flags[_INPUT] = bool(batches)
        flags[_OPEN] = self._sources_open()
        flags = allreduce_max(self.comm, flags)
        self._ckpt_now = False
        if not once:
            free = self._free_slots()
            if free > 0:
                self.select(free)
        self.loop.step(bool(flags[_INPUT]))
        if flags[_CKPT] and not flags[_STOP]:
            self.checkpoint()
        if flags[_REPORT]:
            self.report()
            self._last_report = now
        return flags

    def _wait_for_jobs(self) -> None:
        """Every rank waits (sleeping, not spinning in MPI) until rank 0 has no active job, a stop
        is requested or ``wait_timeout_s`` passed. Collective: the three conditions go through one
        ``Allreduce`` and every rank acts on the reduced values, so all ranks leave the loop in
        the same iteration (a rank that left on its own clock would leave the others blocked in
        an ``Allreduce`` it never joins)."""
        end = time.monotonic() + self.s.wait_timeout_s
        while True:
            active = 0
            if self.rank == 0:
                self.emitter.poll()
                self._emit_pending()
                c = self.emitter.counts()
                active = c["submitting"] + c["pending"] + c["running"]
            mine = np.array([active, self.stop_requested(), time.monotonic() > end], np.int64)
            active, stop, expired = allreduce_max(self.comm, mine)
            if active == 0 or stop:
                return
            if expired:
                if self.rank == 0:
                    log.warning("--once: %d jobs still active after %.0f s", active,
                                self.s.wait_timeout_s)
                return
            time.sleep(self.cfg.jobs.poll_interval_s)

    def _refresh_jobs(self) -> None:
        """Rank 0, before the last report: poll the backend once more so status.json shows the
        jobs still active at the stop as they are (running/pending) at that moment."""
        if self.emitter is None:
            return
        try:
            self.emitter.poll()
        except Exception as exc:  # noqa: BLE001 - a backend hiccup must not block the exit
            log.warning("job states not refreshed before stopping: %s", exc)

    def run(self, once: bool = False) -> int:
        """Serve until SIGTERM (or, with ``once``, until the sources are drained, the free slots
        filled and the jobs done). Checkpoints before returning. Returns the exit status."""
        self.report("starting")
        while True:
            flags = self.step(once)
            if flags[_STOP]:
                break
            if once and not flags[_INPUT] and not flags[_OPEN]:
                free = self._free_slots()
                if free > 0:
                    self.select(free)
                self._wait_for_jobs()
                break
            if not flags[_INPUT]:
                time.sleep(self.s.poll_interval_s)
        self.checkpoint()
        self._refresh_jobs()
        self.report("stopped")
        if self.emitter is not None:
            self.emitter.close()
        return 0
