"""Hot swap of the embedding model in a running selector (``selector.model_updates_dir``).

A retraining job publishes a model as ``<model_updates_dir>/<name>/`` (``metric.json``,
``weights.pt``, ``embedding_domain.json``, then the ``COMPLETE`` marker written last:
:func:`mummi_ml.metric.model_dir.write_complete_marker`). Rank 0 scans the directory every
``model_poll_interval_s`` at a collective point of the loop and broadcasts the newest complete
model the campaign has not used, so every rank swaps at the same point of the stream. Then,
on every rank (:meth:`ModelSwapper.swap`):

1. load the model (a model that does not load is refused on all ranks, one log line);
2. re-embed the rank's candidates and every pick from their stored payloads into new arrays,
   and recompute every candidate's novelty exactly
   (:meth:`~mummi_ml.selector.state.SelectorState.reembed`); a payload that cannot be read
   refuses the model (nothing changed);
3. put the new arrays in place and write a checkpoint with the new version (its manifest,
   written last and atomically, records ``model_version`` and ``model_history``);
4. rank 0 appends a ``model_swap`` record to the picks log and logs one line.

A crash (kill -9) before the manifest of step 3 restarts on the old version (its checkpoint,
its payloads: nothing was deleted), after it on the new one, on every rank alike (one manifest).
A restart resolves the model of the newest checkpoint with :func:`resolve_restart_model`: the
config still names the campaign's first model, the checkpoint names the version in use.

A model of another latent dimension is adopted too: everything is re-embedded, nothing of the
old dimension is kept (the picks' novelty when picked is kept as it was recorded).
"""

from __future__ import annotations

import json
import logging
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from mummi_ml.errors import MummiMLError
from mummi_ml.metric.model_dir import COMPLETE_MARKER, is_complete
from mummi_ml.selector import checkpoint as ck
from mummi_ml.selector.collectives import allreduce_max, bcast_obj
from mummi_ml.selector.config import SelectorConfig
from mummi_ml.selector.embedder import Embedding, make_embedding
from mummi_ml.selector.errors import CheckpointError
from mummi_ml.selector.nn_search import NearestSelected
from mummi_ml.selector.picks_log import PicksLog
from mummi_ml.selector.state import ModelVersion, SelectorState

__all__ = ["ModelSwapper", "find_update", "resolve_restart_model", "CRASH_ENV", "CRASH_POINTS"]

log = logging.getLogger("mummi_ml.selector")

CRASH_ENV = "MUMMI_ML_SWAP_CRASH_AT"
"""Tests only: ``POINT`` or ``POINT:RANK`` makes that rank kill itself (SIGKILL) at that point of
a swap, to test crash safety."""
CRASH_POINTS = ("loaded", "reembedded", "before_manifest", "after_manifest")


def _crash_point(name: str, rank: int) -> None:
    want = os.environ.get(CRASH_ENV, "")
    if not want:
        return
    point, _, who = want.partition(":")
    if point == name and (not who or int(who) == rank):
        os.kill(os.getpid(), signal.SIGKILL)


@dataclass(frozen=True)
class ModelUpdate:
    """A complete model directory found in ``model_updates_dir``: its path and version."""

    path: Path
    version: str


def _version_of(model_dir: Path) -> str | None:
    """The version in the ``COMPLETE`` marker (else metric.json), or None if unreadable."""
    for name in (COMPLETE_MARKER, "metric.json"):
        try:
            v = json.loads((model_dir / name).read_text()).get("version")
        except (OSError, ValueError, AttributeError):
            continue
        if v:
            return str(v)
    return None


def find_update(updates_dir: str | Path, known: set[str]) -> ModelUpdate | None:
    """The newest complete model directory (by the time of its ``COMPLETE`` marker, then name)
    under ``updates_dir`` whose version is not in ``known``, or None."""
    root = Path(updates_dir)
    if not root.is_dir():
        return None
    found = []
    for d in root.iterdir():
        if d.is_dir() and is_complete(d):
            v = _version_of(d)
            if v is not None and v not in known:
                found.append(((d / COMPLETE_MARKER).stat().st_mtime, d.name, d, v))
    if not found:
        return None
    _, _, d, v = max(found)
    return ModelUpdate(d.absolute(), v)


def _with_model(cfg: SelectorConfig, path: str | Path) -> SelectorConfig:
    return cfg.model_copy(update={"model_dir": str(path), "embedding": "model"})


def _descends_from(model_dir: str | Path, version: str) -> bool:
    """Whether ``version`` is in the lineage (or is the parent) of the model in ``model_dir``."""
    try:
        meta = json.loads((Path(model_dir) / "metric.json").read_text())
    except (OSError, ValueError):
        return False
    parent = (meta.get("parent") or {}).get("version")
    return version == parent or version in (meta.get("lineage") or [])


def resolve_restart_model(state_dir: str | Path, cfg: SelectorConfig, emb: Embedding
                          ) -> Embedding:
    """The embedding to restart with: ``emb`` (the config's model), or the model of the newest
    checkpoint when that checkpoint was made after a hot swap of this campaign (its
    ``model_history`` starts with the config's model, or the model descends from it).

    Raises:
        CheckpointError: the checkpoint names a model of this campaign whose directory is gone
            or now holds another version. A checkpoint of another campaign is left to
            :meth:`~mummi_ml.selector.state.StateMeta.check` (the usual refusal).
    """
    found = ck.latest_checkpoint(state_dir)
    if found is None or found[1]["model_version"] == emb.version:
        return emb
    where, man = found
    hist = [ModelVersion.from_dict(h) for h in man.get("model_history", [])]
    cur = next((h for h in reversed(hist) if h.version == man["model_version"]), None)
    if cur is None or not cur.path:
        return emb
    if not (hist[0].version == emb.version or _descends_from(cur.path, emb.version)):
        return emb
    if not Path(cur.path, "metric.json").is_file():
        raise CheckpointError(f"{where}: made with model {cur.version} of this campaign, whose "
                              f"directory {cur.path} is gone; restore it or use a new state_dir")
    new = make_embedding(_with_model(cfg, cur.path))
    if new.version != cur.version:
        raise CheckpointError(f"{where}: made with model {cur.version}, but {cur.path} now holds "
                              f"{new.version}; restore that model or use a new state_dir")
    log.info("restarting on model %s (%s), adopted by this campaign after %s", cur.version,
             cur.path, hist[0].version)
    return new


class ModelSwapper:
    """Watches ``model_updates_dir`` and swaps the model of a running selector (see the module
    docstring). Every method is collective over the selector ranks.

    Args:
        cfg: the ``selector:`` config (``model_updates_dir`` set).
        state: the rank's state.
        picks_log: the picks log (rank 0 appends swap records).
        adopt: ``embedding -> None``: the service's switch of its embedding, ingest and guard.
        checkpoint: ``before_manifest -> None``: the service's (collective) checkpoint.
    """

    def __init__(self, cfg: SelectorConfig, state: SelectorState, picks_log: PicksLog,
                 adopt: Callable[[Embedding], None],
                 checkpoint: Callable[[Callable[[], None] | None], None]):
        self.cfg, self.state, self.picks_log = cfg, state, picks_log
        self.adopt, self.checkpoint = adopt, checkpoint
        self.comm = state.comm
        self.rank = state.rank
        self.refused: set[str] = set()
        self._last_scan: float | None = None

    def record_missing_swaps(self) -> None:
        """Rank 0 on start: append the swap records a crash right after a swap's checkpoint left
        out of the picks log (one per adopted version after the first)."""
        if self.rank != 0:
            return
        logged = {e.get("to") for e in self.picks_log.read_swaps()}
        hist = self.state.meta.history
        for prev, h in zip(hist, hist[1:], strict=False):
            if h.version not in logged:
                self.picks_log.append_swap(self._record(prev, h, seconds=None))

    @staticmethod
    def _record(prev: ModelVersion, new: ModelVersion, seconds: float | None) -> dict[str, Any]:
        return {"from": prev.version, "to": new.version, "path": new.path, "time": new.time,
                "n_selected": new.n_selected, "dim_from": prev.dim, "dim_to": new.dim,
                "seconds": seconds}

    def poll(self) -> str | None:
        """Rank 0 scans (at most every ``model_poll_interval_s``); every rank gets the path of
        the model to adopt now, or None."""
        path = None
        now = time.monotonic()
        if self.rank == 0 and (self._last_scan is None
                               or now - self._last_scan >= self.cfg.model_poll_interval_s):
            self._last_scan = now
            known = {h.version for h in self.state.meta.history} | self.refused
            up = find_update(self.cfg.model_updates_dir or "", known)
            path = None if up is None else str(up.path)
        return bcast_obj(self.comm, path)

    def _agree_failed(self, reason: str, path: str) -> bool:
        """True on every rank if any rank has a reason; rank(s) with one log it."""
        if not allreduce_max(self.comm, np.array([bool(reason)], np.int64))[0]:
            return False
        if reason:
            log.error("rank %d: model %s refused, the selector keeps model %s: %s", self.rank,
                      path, self.state.meta.model_version, reason)
        return True

    def step(self) -> bool:
        """Poll and, if a new model is there, swap to it. Returns whether a swap happened."""
        path = self.poll()
        return path is not None and self.swap(path)

    def swap(self, path: str) -> bool:
        """Swap to the model in ``path`` (collective); returns False if it was refused."""
        t0 = time.perf_counter()
        st, old = self.state, self.state.meta
        emb, reason = None, ""
        try:
            emb = make_embedding(_with_model(self.cfg, path))
        except (MummiMLError, OSError) as exc:
            reason = f"does not load ({exc})"
        if self._agree_failed(reason, path):
            self.refused.add(_version_of(Path(path)) or path)
            return False
        assert emb is not None
        _crash_point("loaded", self.rank)
        new, reason = st.reembed(emb.embed, emb.dim, NearestSelected(old.kk, self.cfg.nn_backend),
                                 self.cfg.embed_batch_size)
        if new is None:
            self._agree_failed(reason or "", path)  # the ranks with a reason log it
            self.refused.add(emb.version)
            return False
        _crash_point("reembedded", self.rank)
        adopted = ModelVersion(emb.version, str(Path(path).absolute()), time.time(),
                               len(st.selected), emb.dim)
        st.switch(replace(old, dim=emb.dim, model_version=emb.version,
                          history=(*old.history, adopted)), new)
        self.adopt(emb)
        self.checkpoint(lambda: _crash_point("before_manifest", self.rank))
        _crash_point("after_manifest", self.rank)
        seconds = time.perf_counter() - t0
        if self.rank == 0:
            prev = old.history[-1] if old.history else ModelVersion(
                old.model_version, "", 0.0, 0, old.dim)
            self.picks_log.append_swap(self._record(prev, adopted, seconds))
            log.info("model swap: %s (d=%d) -> %s (d=%d) from %s in %.2f s; %d candidates on "
                     "rank 0 and %d picks re-embedded", old.model_version, old.dim, emb.version,
                     emb.dim, path, seconds, len(st.pool), len(st.selected))
        return True
