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
import math
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from mummi_ml.durable import atomic_path, write_json_atomic
from mummi_ml.errors import PatchFileError
from mummi_ml.jsonutil import json_dumps_strict
from mummi_ml.patch.h5io import h5_error_reason, open_h5_self_contained
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
    """``write(f)`` into a temporary file, then rename; on any failure (e.g. a full disk) the
    temporary file is removed and CheckpointError says why in one line."""
    try:
        with atomic_path(path, fsync=True) as tmp, h5py.File(tmp, "w") as f:
            write(f)
    except (OSError, RuntimeError, ValueError) as exc:
        raise CheckpointError(f"{path}: cannot write the checkpoint file "
                              f"({h5_error_reason(exc)})") from None


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
    try:
        write_json_atomic(path, data, fsync=True, indent=1)
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot write the manifest "
                              f"({exc.strerror or exc})") from None
    return path


# manifest key -> (type, minimum) it must have; "groups" (list of str) is optional
_MANIFEST_INTS = {"version": 1, "n_ranks": 1, "seq": 0, "dim": 1, "kk": 1}


def _check_manifest(man: Any, path: Path) -> dict:
    """The manifest if its keys have the types a restore needs, else CheckpointError (one line).

    A manifest is written whole (temporary file, fsync, rename), so one that exists but is not
    such an object is corruption or a foreign file, never a torn write: it is refused rather
    than skipped (skipping would silently restart the campaign from an older checkpoint or from
    nothing)."""
    def bad(why: str) -> CheckpointError:
        return CheckpointError(f"{path}: malformed checkpoint manifest ({why}); repair or move "
                               "this checkpoint directory away to restart from an older one")

    if not isinstance(man, dict):
        raise bad(f"expected a JSON object, got {type(man).__name__}")
    if man.get("schema") != SCHEMA:
        raise bad(f"schema is {str(man.get('schema'))[:60]!r}, expected {SCHEMA!r}")
    for key, lo in _MANIFEST_INTS.items():
        v = man.get(key)
        if isinstance(v, bool) or not isinstance(v, int) or v < lo:
            raise bad(f"{key!r} must be an integer >= {lo}, got {str(v)[:60]!r}")
    t = man.get("time")
    if isinstance(t, bool) or not isinstance(t, (int, float)) or not math.isfinite(t):
        raise bad(f"'time' must be a finite number, got {str(t)[:60]!r}")
    if not isinstance(man.get("model_version"), str):
        raise bad(f"'model_version' must be a string, got {str(man.get('model_version'))[:60]!r}")
    groups = man.get("groups", [])
    if not isinstance(groups, list) or not all(isinstance(g, str) for g in groups):
        raise bad(f"'groups' must be a list of strings, got {str(groups)[:60]!r}")
    hist = man.get("model_history", [])  # models of the campaign (hot swap)
    if not isinstance(hist, list) or not all(
            isinstance(h, dict) and isinstance(h.get("version"), str)
            and isinstance(h.get("path", ""), str) and isinstance(h.get("n_selected", 0), int)
            for h in hist):
        raise bad(f"'model_history' must be a list of objects with a string 'version', got "
                  f"{str(hist)[:60]!r}")
    return man


def _complete(ckpt: Path) -> dict | None:
    """The checkpoint's manifest if the checkpoint is complete (manifest and every file it
    names exist), None if it is not (no manifest yet); CheckpointError if the manifest is
    unreadable or malformed."""
    path = ckpt / "manifest.json"
    if not path.exists():
        return None
    try:
        man = json.loads(path.read_bytes().decode("utf-8"))
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot read the checkpoint manifest "
                              f"({exc.strerror or exc})") from None
    except ValueError as exc:  # also UnicodeDecodeError
        raise CheckpointError(f"{path}: checkpoint manifest is not valid JSON "
                              f"({str(exc)[:100]}); repair or move this checkpoint directory "
                              "away to restart from an older one") from None
    man = _check_manifest(man, path)
    n = man["n_ranks"]
    need = [ckpt / f"rank-{r:05d}.h5" for r in range(n)] + [ckpt / "selected.h5"]
    return man if all(p.exists() for p in need) else None


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


def _rows(f: h5py.Group, key: str, n: int | None, width: int | None, path: Path) -> h5py.Dataset:
    """Dataset ``key`` of ``f``, checked to be numeric with ``n`` rows (None: any) and, for
    ``width``, 2-D with that many columns (else 1-D); CheckpointError otherwise."""
    ds = f.get(key)
    if not isinstance(ds, h5py.Dataset) or ds.dtype.kind not in "iufb":
        raise CheckpointError(f"{path}: malformed checkpoint file ({key!r} is missing or not "
                              "a numeric dataset)")
    want = (n if n is not None else ds.shape[0] if ds.ndim else -1,
            *(() if width is None else (width,)))
    if ds.shape != want:
        raise CheckpointError(f"{path}: malformed checkpoint file ({key!r} has shape "
                              f"{list(ds.shape)}, expected {list(want)})")
    return ds


def _json_attr(f: h5py.File, key: str, kind: type, path: Path) -> Any:
    """JSON file attribute ``key`` decoded, checked to be a ``kind`` (list or dict)."""
    raw = f.attrs.get(key)
    try:
        value = json.loads(raw.decode() if isinstance(raw, bytes) else str(raw))
    except (TypeError, ValueError):
        value = None
    ok = isinstance(value, kind) and (
        all(isinstance(v, str) for v in value) if kind is list
        else all(isinstance(v, int) and not isinstance(v, bool) for v in value.values()))
    if not ok:
        raise CheckpointError(f"{path}: malformed checkpoint file (attribute {key!r} is not a "
                              f"JSON {'list of strings' if kind is list else 'map of counts'})")
    return value


def load_rank_state(ckpt: Path, man: dict, rank: int, size: int) -> RankState:
    """This rank's share of a checkpoint written by ``man['n_ranks']`` ranks.

    Every file is opened with :func:`~mummi_ml.patch.h5io.open_h5_self_contained` (no external
    storage, links or virtual datasets) and checked before use: pool fields of one length,
    ``z [n, dim]`` and ``dk [n, kk]`` as the manifest says. CheckpointError (one line) if not.
    """
    n_old = int(man["n_ranks"])
    dim, kk = int(man["dim"]), int(man["kk"])
    parts: dict[str, list[np.ndarray]] = {k: [] for k in (*POOL_FIELDS, "z", "dk")}
    ev, qi, qc, covered = [], [], [], []
    counters: dict[str, int] = {}
    next_seg = 0
    offset = 0
    for o in range(n_old):
        path = ckpt / f"rank-{o:05d}.h5"
        try:
            with open_h5_self_contained(path, "a checkpoint file") as f:
                n_o = _rows(f, "pool/ids", None, None, path).shape[0]
                start = (rank - offset) % size
                for k in parts:
                    width = dim if k == "z" else kk if k == "dk" else None
                    ds = _rows(f, f"pool/{k}", n_o, width, path)
                    parts[k].append(ds[start::size] if start < n_o else ds[:0])
                covered += _json_attr(f, "covered", list, path)
                if o % size == rank:
                    ev.append(_rows(f, "evicted_ids", None, None, path)[:])
                    n_q = _rows(f, "quarantined_ids", None, None, path).shape[0]
                    qi.append(f["quarantined_ids"][:])
                    qc.append(_rows(f, "quarantined_codes", n_q, None, path)[:])
                    for k, v in _json_attr(f, "counters", dict, path).items():
                        counters[k] = counters.get(k, 0) + int(v)
                if o == rank:
                    next_seg = f.attrs.get("next_seg")
                    if not isinstance(next_seg, (int, np.integer)) or next_seg < 0:
                        raise CheckpointError(f"{path}: malformed checkpoint file (attribute "
                                              f"'next_seg' is {str(next_seg)[:40]!r}, expected "
                                              "an integer >= 0)")
                    next_seg = int(next_seg)
        except PatchFileError as exc:
            raise CheckpointError(str(exc)) from None
        except (OSError, KeyError, RuntimeError) as exc:
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


# fields of the selected set a checkpoint must have ("awaiting_copy" is optional: older ones)
_SELECTED_FIELDS = ("ids", "classes", "novelty", "owner", "src", "seg", "row", "emitted")


def load_selected(ckpt: Path) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """``(selected arrays, accepted ids)`` of a checkpoint, checked like
    :func:`load_rank_state` (every field of one length m, ``z [m, dim]``)."""
    path = ckpt / "selected.h5"
    man = _complete(ckpt) or {}
    try:
        with open_h5_self_contained(path, "a checkpoint file") as f:
            m = _rows(f, "selected/ids", None, None, path).shape[0]
            z = f.get("selected/z")
            dim = man.get("dim") or (z.shape[-1] if isinstance(z, h5py.Dataset) and z.ndim else 0)
            out = {"z": _rows(f, "selected/z", m, dim, path)[:]}
            for k in (*_SELECTED_FIELDS, "awaiting_copy"):
                if k != "awaiting_copy" or "selected/awaiting_copy" in f:
                    out[k] = _rows(f, f"selected/{k}", m, None, path)[:]
            return out, _rows(f, "accepted_ids", None, None, path)[:]
    except PatchFileError as exc:
        raise CheckpointError(str(exc)) from None
    except (OSError, KeyError, RuntimeError) as exc:
        raise CheckpointError(f"{path}: unreadable ({exc})") from None


def _complete_or_none(ckpt: Path) -> dict | None:
    """:func:`_complete`, a malformed manifest counting as incomplete (for pruning)."""
    try:
        return _complete(ckpt)
    except CheckpointError:
        return None


def prune_checkpoints(state_dir: str | Path, keep: int) -> None:
    """Delete all but the ``keep`` newest complete checkpoints, and incomplete older ones."""
    root = Path(state_dir) / "checkpoints"
    dirs = sorted(root.glob("ckpt-*"), reverse=True)
    complete = [d for d in dirs if _complete_or_none(d) is not None]
    if not complete:
        return
    keep_set = set(complete[:keep])
    newest = complete[0]
    for d in dirs:
        if d not in keep_set and d.name < newest.name:
            shutil.rmtree(d, ignore_errors=True)
