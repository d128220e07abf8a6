"""Checkpoints of the selector state: one HDF5 file per rank, then one manifest written atomically.

Layout under ``STATE/checkpoints/ckpt-SSSSSSSS/``::

    rank-RRRRR.h5     a rank's pool (ids, classes, z, dk, seen, src, seg, row), evicted and
                      quarantined ids, counters, covered spool files, next payload segment
    selected.h5       (rank 0) the selected set and the accepted-id set, replicated on all ranks
    manifest.json     written last (atomically, fsynced): the checkpoint is complete iff it exists

A restart loads the newest complete checkpoint on any number of ranks: the old pools, laid end to
end in old-rank order, are dealt round-robin to the new ranks (candidate g goes to g % R).
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np

from mummi_ml.durable import atomic_path, write_json_atomic
from mummi_ml.jsonutil import json_dumps_strict
from mummi_ml.selector.errors import CheckpointError
from mummi_ml.selector.pool import POOL_FIELDS

__all__ = ["RankState", "write_rank_state", "write_selected", "write_manifest",
           "latest_checkpoint", "load_rank_state", "load_selected", "prune_checkpoints",
           "checkpoint_dir", "SCHEMA"]

SCHEMA = "mummi-ml-selector-checkpoint"
VERSION = 1


@dataclass
class RankState:
    """What one rank saves (and what a restarted rank gets back after redistribution)."""

    pool: dict[str, np.ndarray]
    evicted_ids: np.ndarray
    quarantined_ids: np.ndarray
    quarantined_codes: np.ndarray
    counters: dict[str, int] = field(default_factory=dict)
    covered: list[str] = field(default_factory=list)
    next_seg: int = 0


def checkpoint_dir(state_dir: str | Path, seq: int) -> Path:
    return Path(state_dir) / "checkpoints" / f"ckpt-{seq:08d}"


def _atomic_h5(path: Path, write) -> None:
    with atomic_path(path, fsync=True) as tmp, h5py.File(tmp, "w") as f:
        write(f)


def write_rank_state(ckpt: Path, rank: int, st: RankState) -> Path:
    """Write ``rank-RRRRR.h5`` atomically."""
    ckpt.mkdir(parents=True, exist_ok=True)
    path = ckpt / f"rank-{rank:05d}.h5"

    def w(f: h5py.File) -> None:
        g = f.create_group("pool")
        for k, v in st.pool.items():
            g.create_dataset(k, data=v)
        f.create_dataset("evicted_ids", data=st.evicted_ids.astype(np.uint64))
        f.create_dataset("quarantined_ids", data=st.quarantined_ids.astype(np.uint64))
        f.create_dataset("quarantined_codes", data=st.quarantined_codes.astype(np.int8))
        f.attrs["counters"] = json_dumps_strict(st.counters)
        f.attrs["covered"] = json_dumps_strict(st.covered)
        f.attrs["next_seg"] = st.next_seg
        f.attrs["schema"] = SCHEMA

    _atomic_h5(path, w)
    return path


def write_selected(ckpt: Path, arrays: dict[str, np.ndarray], accepted: np.ndarray) -> Path:
    """Write ``selected.h5`` (rank 0)."""
    ckpt.mkdir(parents=True, exist_ok=True)
    path = ckpt / "selected.h5"

    def w(f: h5py.File) -> None:
        g = f.create_group("selected")
        for k, v in arrays.items():
            g.create_dataset(k, data=v)
        f.create_dataset("accepted_ids", data=accepted.astype(np.uint64))

    _atomic_h5(path, w)
    return path


def write_manifest(ckpt: Path, manifest: dict) -> Path:
    """Write ``manifest.json`` last and atomically: this completes the checkpoint."""
    data = {"schema": SCHEMA, "version": VERSION, "time": time.time(), **manifest}
    path = ckpt / "manifest.json"
    write_json_atomic(path, data, fsync=True, indent=1)
    return path


def _complete(ckpt: Path) -> dict | None:
    try:
        man = json.loads((ckpt / "manifest.json").read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(man, dict) or man.get("schema") != SCHEMA:
        return None
    try:  # valid JSON of the wrong shape is corruption, not a torn write: say so
        n = int(man.get("n_ranks", 0))
        man["version"] = int(man["version"])
    except (KeyError, TypeError, ValueError):
        raise CheckpointError(f"{ckpt / 'manifest.json'}: malformed manifest (n_ranks and "
                              "version must be integers)") from None
    need = [ckpt / f"rank-{r:05d}.h5" for r in range(n)] + [ckpt / "selected.h5"]
    return man if n > 0 and all(p.exists() for p in need) else None


def latest_checkpoint(state_dir: str | Path) -> tuple[Path, dict] | None:
    """The newest complete checkpoint ``(dir, manifest)``, or None."""
    root = Path(state_dir) / "checkpoints"
    if not root.is_dir():
        return None
    for d in sorted(root.glob("ckpt-*"), reverse=True):
        man = _complete(d)
        if man is not None:
            if int(man["version"]) > VERSION:
                raise CheckpointError(f"{d}: checkpoint version {man['version']} is newer than "
                                      f"this mummi-ml reads ({VERSION})")
            return d, man
    return None


def load_rank_state(ckpt: Path, man: dict, rank: int, size: int) -> RankState:
    """This rank's share of a checkpoint written by ``man['n_ranks']`` ranks."""
    n_old = int(man["n_ranks"])
    parts: dict[str, list[np.ndarray]] = {k: [] for k in (*POOL_FIELDS, "z", "dk")}
    ev, qi, qc, covered = [], [], [], []
    counters: dict[str, int] = {}
    next_seg = 0
    offset = 0
    for o in range(n_old):
        path = ckpt / f"rank-{o:05d}.h5"
        try:
            with h5py.File(path, "r") as f:
                n_o = len(f["pool/ids"])
                start = (rank - offset) % size
                for k in parts:
                    parts[k].append(f["pool"][k][start::size] if start < n_o
                                    else f["pool"][k][:0])
                covered += json.loads(f.attrs["covered"])
                if o % size == rank:
                    ev.append(f["evicted_ids"][:])
                    qi.append(f["quarantined_ids"][:])
                    qc.append(f["quarantined_codes"][:])
                    for k, v in json.loads(f.attrs["counters"]).items():
                        counters[k] = counters.get(k, 0) + int(v)
                if o == rank:
                    next_seg = int(f.attrs["next_seg"])
        except (OSError, KeyError) as exc:
            raise CheckpointError(f"{path}: unreadable rank state ({exc})") from None
        offset += n_o
    cat = {k: np.concatenate(v) for k, v in parts.items()}
    u64 = np.zeros(0, np.uint64)
    return RankState(
        pool=cat,
        evicted_ids=np.concatenate(ev) if ev else u64,
        quarantined_ids=np.concatenate(qi) if qi else u64,
        quarantined_codes=np.concatenate(qc) if qc else np.zeros(0, np.int8),
        counters=counters,
        covered=covered,
        next_seg=next_seg,
    )


def load_selected(ckpt: Path) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """``(selected arrays, accepted ids)`` of a checkpoint."""
    try:
        with h5py.File(ckpt / "selected.h5", "r") as f:
            return {k: v[:] for k, v in f["selected"].items()}, f["accepted_ids"][:]
    except (OSError, KeyError) as exc:
        raise CheckpointError(f"{ckpt}/selected.h5: unreadable ({exc})") from None


def prune_checkpoints(state_dir: str | Path, keep: int) -> None:
    """Delete all but the ``keep`` newest complete checkpoints, and incomplete older ones."""
    root = Path(state_dir) / "checkpoints"
    dirs = sorted(root.glob("ckpt-*"), reverse=True)
    complete = [d for d in dirs if _complete(d) is not None]
    if not complete:
        return
    keep_set = set(complete[:keep])
    newest = complete[0]
    for d in dirs:
        if d not in keep_set and d.name < newest.name:
            shutil.rmtree(d, ignore_errors=True)
