"""Saving and restoring the whole selector state of a rank (glue between the service and
:mod:`mummi_ml.selector.checkpoint`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mummi_ml.selector.checkpoint import (
    RankState,
    checkpoint_dir,
    latest_checkpoint,
    load_rank_state,
    load_selected,
    prune_checkpoints,
    write_manifest,
    write_rank_state,
    write_selected,
)
from mummi_ml.selector.collectives import allreduce_sum, barrier
from mummi_ml.selector.errors import CheckpointError
from mummi_ml.selector.idset import IdSet
from mummi_ml.selector.pool import CandidatePool
from mummi_ml.selector.selected import SelectedSet

__all__ = ["Restored", "restore_state", "save_checkpoint", "COUNTERS"]

COUNTERS = ("ingested", "accepted", "quarantined", "evicted", "quarantined_files", "replayed")
"""Counters of a rank, saved in its checkpoint file and summed into the manifest and status.json
(``replayed``: copies of replayed picks recognised as their own re-read, see
:mod:`mummi_ml.selector.ingest`; absent from older checkpoints, where it counts from 0)."""


@dataclass
class Restored:
    pool: CandidatePool
    selected: SelectedSet
    accepted: IdSet
    next_seq: int
    covered: list[str]
    next_seg: int
    counters: dict[str, int]
    evicted_ids: np.ndarray
    quarantined_ids: np.ndarray
    quarantined_codes: np.ndarray
    time: float


def restore_state(
    state_dir: Path, rank: int, size: int, emb: Any, kk: int, comm: Any = None,
    groups: list[str] | None = None,
) -> Restored | None:
    """This rank's share of the newest complete checkpoint (None if there is none).

    Raises:
        CheckpointError: the checkpoint was made with another embedding (version or dimension),
            another novelty definition, or other selection groups (queues / bins) than
            ``groups`` (checkpoints without the record are accepted).
    """
    found = latest_checkpoint(state_dir)
    if found is None:
        return None
    ckpt, man = found
    if man["model_version"] != emb.version or int(man["dim"]) != emb.dim:
        raise CheckpointError(
            f"{ckpt}: made with embedding {man['model_version']} (d={man['dim']}), the config "
            f"gives {emb.version} (d={emb.dim}); use the same model or a new state_dir"
        )
    if int(man["kk"]) != kk:
        raise CheckpointError(f"{ckpt}: made with {man['kk']} neighbours per candidate, the "
                              f"config gives {kk} (selector.novelty / knn_k changed)")
    if groups is not None and "groups" in man and list(man["groups"]) != list(groups):
        raise CheckpointError(f"{ckpt}: made with selection groups {man['groups']}, the config "
                              f"gives {list(groups)} (selector.queues changed); use a new "
                              "state_dir")
    st: RankState = load_rank_state(ckpt, man, rank, size)
    sel, accepted = load_selected(ckpt)
    return Restored(
        pool=CandidatePool.from_arrays(st.pool, emb.dim, kk),
        selected=SelectedSet.from_arrays(sel, emb.dim),
        accepted=IdSet(accepted),
        next_seq=int(man["seq"]) + 1,
        covered=st.covered,
        next_seg=st.next_seg,
        counters=st.counters,
        evicted_ids=st.evicted_ids,
        quarantined_ids=st.quarantined_ids,
        quarantined_codes=st.quarantined_codes,
        time=float(man["time"]),
    )


def save_checkpoint(svc: Any, seq: int) -> Path:
    """Every rank writes its file, rank 0 the selected set; after a barrier, rank 0 writes the
    manifest (the checkpoint is complete from then on) and prunes old checkpoints. Collective."""
    d = checkpoint_dir(svc.state_dir, seq)
    svc.payloads.sync()  # the segments this checkpoint refers to are on disk before it exists
    ing = svc.ingestor
    counters = {k: int(ing.counters.get(k, 0)) for k in COUNTERS}
    write_rank_state(d, svc.rank, RankState(
        pool=svc.pool.to_arrays(),
        evicted_ids=ing.evicted_ids,
        quarantined_ids=ing.quarantined_ids,
        quarantined_codes=ing.quarantined_codes,
        counters=counters,
        covered=list(svc._ingested_files),
        next_seg=svc.payloads.next_seg,
    ))
    if svc.rank == 0:
        write_selected(d, svc.selected.to_arrays(), svc.accepted.to_array())
    totals = allreduce_sum(svc.comm, np.array([counters[k] for k in COUNTERS] + [len(svc.pool)],
                                              dtype=np.int64))
    barrier(svc.comm)
    if svc.rank == 0:
        write_manifest(d, {
            "seq": seq, "n_ranks": svc.size, "dim": svc.emb.dim, "kk": svc.kk,
            "model_version": svc.emb.version, "novelty": svc.s.novelty,
            "n_selected": len(svc.selected), "groups": list(svc.engine.groups.names),
            "counters": {**dict(zip(COUNTERS, totals[:-1].tolist(), strict=True)),
                         "pooled": int(totals[-1])},
        })
        prune_checkpoints(svc.state_dir, svc.s.keep_checkpoints)
    barrier(svc.comm)
    if not (d / "manifest.json").exists():
        raise CheckpointError(f"{d}: manifest missing after the checkpoint barrier "
                              "(is state_dir on a file system shared by all ranks?)")
    return d
