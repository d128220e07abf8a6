"""A bounded, class-balanced reservoir sample of accepted arrivals, identical on any rank count.

Retraining data (issue 16): the selector keeps, per class, the ``per_class`` accepted arrivals
with the SMALLEST hash priority ``h(id)`` = the first 8 bytes of ``blake2b(id as 8 little-endian
bytes, key=KEY)`` read as an unsigned integer (ties, which need a 64-bit collision, broken by the
id). Because membership depends only on the id, never on arrival order or on which rank saw the
arrival, the union of the per-rank reservoirs followed by "keep the ``per_class`` smallest" is
exactly the reservoir one process would hold after seeing every arrival: a uniform sample without
replacement of each class (the hash acts as a fixed random permutation of the ids).

State (:meth:`Reservoir.to_state`, a dict of numpy arrays for the selector's checkpoint)::

    per_class   int64 [1]       capacity of each class
    n_classes   int64 [1]
    ids         uint64 [m]      sampled ids, m <= n_classes * per_class, sorted by (class, prio)
    classes     int64 [m]       class of each sampled id (0 .. n_classes-1)
    prio        uint64 [m]      h(id)
    loc         int64 [m, 3]    payload location (src rank, segment, row) in the PayloadStore
    seen        int64 [n_classes]   arrivals offered per class (sums across ranks)

Memory is bounded by ``n_classes * per_class`` entries (32 bytes + 8 per entry) whatever the
stream length. Merging (:meth:`Reservoir.merge`) is exact for the sample and idempotent for it
(an id present in several parts is kept once); ``seen`` adds up, so merge the partial reservoirs
of DISJOINT arrivals (each rank's own since the last merge), e.g. gather every rank's state to
rank 0 at a checkpoint, merge there, and let the other ranks :meth:`~Reservoir.clear`.

:func:`write_snapshot` writes the reservoir plus the selected patches as ordinary patch files, a
training set for ``mummi-ml train --init-from``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mummi_ml.durable import write_json_atomic
from mummi_ml.patch import PatchBatch, PatchWriter
from mummi_ml.selector.errors import SelectorError
from mummi_ml.selector.payloads import PayloadStore

__all__ = ["Reservoir", "hash_priority", "Snapshot", "write_snapshot", "fetch_from_store",
           "RESERVOIR_KEY", "SNAPSHOT_MANIFEST", "read_manifest"]

RESERVOIR_KEY = b"mummi-ml reservoir v1"
"""Key of the priority hash (fixed: changing it changes every campaign's sample)."""

SNAPSHOT_MANIFEST = "snapshot.json"


def hash_priority(ids: np.ndarray, key: bytes = RESERVOIR_KEY) -> np.ndarray:
    """uint64 ``[n]`` keyed blake2b priority of uint64 patch ids ``[n]`` (~1 us per id)."""
    ids = np.ascontiguousarray(np.asarray(ids, dtype=np.uint64).ravel())
    raw = ids.astype("<u8").tobytes()
    out = np.empty(len(ids), dtype=np.uint64)
    for i in range(len(ids)):
        d = hashlib.blake2b(raw[8 * i : 8 * i + 8], digest_size=8, key=key).digest()
        out[i] = int.from_bytes(d, "little")
    return out


class Reservoir:
    """Per class, the ``per_class`` offered arrivals of smallest :func:`hash_priority`.

    Args:
        n_classes: number of classes (the selector's classes or queues), >= 1.
        per_class: capacity of each class, >= 1 (total memory n_classes * per_class entries).
    """

    def __init__(self, n_classes: int, per_class: int):
        if int(n_classes) < 1 or int(per_class) < 1:
            raise SelectorError(f"reservoir: n_classes and per_class must be >= 1, got "
                                f"{n_classes} and {per_class}")
        self.n_classes, self.per_class = int(n_classes), int(per_class)
        self.clear()

    def clear(self) -> None:
        """Forget the sample and the counts (a rank whose part was merged elsewhere)."""
        self.ids = np.zeros(0, np.uint64)
        self.classes = np.zeros(0, np.int64)
        self.prio = np.zeros(0, np.uint64)
        self.loc = np.zeros((0, 3), np.int64)
        self.seen = np.zeros(self.n_classes, np.int64)

    def __len__(self) -> int:
        return len(self.ids)

    def counts(self) -> np.ndarray:
        """int64 ``[n_classes]`` sampled entries per class."""
        return np.bincount(self.classes, minlength=self.n_classes).astype(np.int64)

    def offer(self, ids: np.ndarray, classes: np.ndarray, loc: np.ndarray) -> None:
        """Offer accepted arrivals: ids uint64 ``[n]``, classes int ``[n]`` in
        ``[0, n_classes)``, payload locations int64 ``[n, 3]`` (src, seg, row)."""
        ids = np.asarray(ids, dtype=np.uint64).ravel()
        classes = np.asarray(classes, dtype=np.int64).ravel()
        loc = np.asarray(loc, dtype=np.int64).reshape(-1, 3)
        if not len(ids) == len(classes) == len(loc):
            raise SelectorError(f"reservoir.offer: ids, classes, loc of lengths {len(ids)}, "
                                f"{len(classes)}, {len(loc)}")
        if len(classes) and (classes.min() < 0 or classes.max() >= self.n_classes):
            raise SelectorError(f"reservoir.offer: classes outside 0..{self.n_classes - 1}")
        self.seen += np.bincount(classes, minlength=self.n_classes)
        prio = hash_priority(ids)
        # a class already full keeps a new arrival only below its largest priority (equal:
        # decided by the id in _keep): most arrivals of a long stream stop here
        bar = np.full(self.n_classes, np.iinfo(np.uint64).max, np.uint64)
        full = self.counts() >= self.per_class
        if full.any():
            for c in np.flatnonzero(full):
                bar[c] = self.prio[self.classes == c].max()
        cand = prio <= bar[classes]
        if not cand.any():
            return
        self._keep(np.concatenate([self.ids, ids[cand]]),
                   np.concatenate([self.classes, classes[cand]]),
                   np.concatenate([self.prio, prio[cand]]),
                   np.concatenate([self.loc, loc[cand]]))

    def _keep(self, ids: np.ndarray, classes: np.ndarray, prio: np.ndarray,
              loc: np.ndarray) -> None:
        """Keep the ``per_class`` smallest (prio, id) of each class, each id once."""
        order = np.lexsort((ids, prio, classes))  # by class, then priority, then id
        ids, classes, prio, loc = ids[order], classes[order], prio[order], loc[order]
        first = np.ones(len(ids), bool)  # equal ids have equal prio: adjacent after the sort
        first[1:] = (ids[1:] != ids[:-1]) | (classes[1:] != classes[:-1])
        ids, classes, prio, loc = ids[first], classes[first], prio[first], loc[first]
        start = np.searchsorted(classes, classes, side="left")
        rank_in_class = np.arange(len(ids)) - start
        keep = rank_in_class < self.per_class
        self.ids, self.classes = ids[keep], classes[keep]
        self.prio, self.loc = prio[keep], loc[keep]

    @classmethod
    def merge(cls, parts: Sequence[Reservoir]) -> Reservoir:
        """The reservoir of the union of the parts' arrivals (exact; see the module docstring).
        Parts must have equal ``n_classes`` and ``per_class``."""
        if not parts:
            raise SelectorError("reservoir.merge: no parts")
        n, k = parts[0].n_classes, parts[0].per_class
        if any((p.n_classes, p.per_class) != (n, k) for p in parts):
            raise SelectorError("reservoir.merge: parts of different capacities")
        out = cls(n, k)
        out.seen = np.sum([p.seen for p in parts], axis=0).astype(np.int64)
        out._keep(np.concatenate([p.ids for p in parts]),
                  np.concatenate([p.classes for p in parts]),
                  np.concatenate([p.prio for p in parts]),
                  np.concatenate([p.loc for p in parts]))
        return out

    def live_segments(self) -> set[tuple[int, int]]:
        """``(src, seg)`` payload segments the sample refers to: add them to the live set of
        :meth:`PayloadStore.collect_garbage` so a snapshot can still read them."""
        return {(int(s), int(g)) for s, g in self.loc[:, :2]}

    def to_state(self) -> dict[str, np.ndarray]:
        """The state as numpy arrays (module docstring), for a checkpoint."""
        return {"per_class": np.array([self.per_class], np.int64),
                "n_classes": np.array([self.n_classes], np.int64),
                "ids": self.ids.copy(), "classes": self.classes.copy(),
                "prio": self.prio.copy(), "loc": self.loc.copy(), "seen": self.seen.copy()}

    @classmethod
    def from_state(cls, state: dict[str, np.ndarray]) -> Reservoir:
        """Inverse of :meth:`to_state`; SelectorError on a malformed state."""
        try:
            out = cls(int(state["n_classes"][0]), int(state["per_class"][0]))
            ids = np.asarray(state["ids"], np.uint64)
            classes = np.asarray(state["classes"], np.int64)
            loc = np.asarray(state["loc"], np.int64).reshape(-1, 3)
            seen = np.asarray(state["seen"], np.int64)
        except (KeyError, IndexError, TypeError, ValueError) as exc:
            raise SelectorError(f"reservoir state: malformed ({type(exc).__name__}: {exc})") \
                from None
        if not len(ids) == len(classes) == len(loc) or seen.shape != (out.n_classes,):
            raise SelectorError("reservoir state: arrays of inconsistent lengths")
        if len(classes) and (classes.min() < 0 or classes.max() >= out.n_classes):
            raise SelectorError("reservoir state: class outside the range")
        out.seen = seen
        out._keep(ids, classes, hash_priority(ids), loc)  # priorities recomputed, not trusted
        return out


@dataclass(frozen=True)
class Snapshot:
    """A training snapshot written by :func:`write_snapshot`.

    Attributes:
        dir: the snapshot directory.
        files: the patch files (give them to ``mummi-ml train --data``).
        n_reservoir: reservoir patches written (those not also selected).
        n_selected: selected patches written.
        class_counts: patches per class in the reservoir file ``[n_classes]``.
    """

    dir: Path
    files: list[Path]
    n_reservoir: int
    n_selected: int
    class_counts: list[int]


def fetch_from_store(store: PayloadStore) -> Callable[[np.ndarray], PatchBatch]:
    """A payload fetcher for :func:`write_snapshot` reading a
    :class:`~mummi_ml.selector.payloads.PayloadStore` (row by row: fine for a snapshot)."""

    def fetch(loc: np.ndarray) -> PatchBatch:
        return PatchBatch.concat([store.get(int(s), int(g), int(r))
                                  for s, g, r in np.asarray(loc).reshape(-1, 3)])

    return fetch


def _write(path: Path, batch: PatchBatch, attrs: dict) -> None:
    with PatchWriter(path, attrs=attrs, compression_level=1) as w:
        if len(batch):
            w.append(batch)


def write_snapshot(
    out_dir: str | Path,
    reservoir: Reservoir,
    fetch: Callable[[np.ndarray], PatchBatch],
    selected: PatchBatch | None = None,
    attrs: dict | None = None,
) -> Snapshot:
    """Write ``reservoir.h5`` (the sample, minus ids also in ``selected``), ``selected.h5`` and
    ``snapshot.json`` (written last: its presence means the snapshot is whole).

    Args:
        out_dir: a new directory (refused if it holds a manifest already).
        reservoir: the MERGED (global) reservoir.
        fetch: maps payload locations int64 ``[m, 3]`` to a PatchBatch of m patches in order
            (e.g. :func:`fetch_from_store`).
        selected: the selected patches (payloads), or None.
        attrs: extra file attributes (e.g. ``{"model_version": ...}``).
    """
    out = Path(out_dir)
    if (out / SNAPSHOT_MANIFEST).exists():
        raise SelectorError(f"{out}: holds a snapshot already")
    out.mkdir(parents=True, exist_ok=True)
    sel = selected if selected is not None else PatchBatch.empty()
    keep = ~np.isin(reservoir.ids, sel.ids)
    batch = fetch(reservoir.loc[keep]) if keep.any() else PatchBatch.empty()
    if len(batch) != int(keep.sum()) or not np.array_equal(batch.ids, reservoir.ids[keep]):
        raise SelectorError("snapshot: the payloads fetched are not the reservoir's patches")
    base = {"created_by": "mummi-ml selector snapshot", **(attrs or {})}
    files = [out / "reservoir.h5", out / "selected.h5"]
    _write(files[0], batch, {**base, "part": "reservoir"})
    _write(files[1], sel, {**base, "part": "selected"})
    counts = np.bincount(reservoir.classes[keep], minlength=reservoir.n_classes)
    snap = Snapshot(out, files, int(keep.sum()), len(sel), [int(c) for c in counts])
    manifest = {"files": [f.name for f in files], "n_reservoir": snap.n_reservoir,
                "n_selected": snap.n_selected, "class_counts": snap.class_counts,
                "seen": [int(s) for s in reservoir.seen], **(attrs or {})}
    write_json_atomic(out / SNAPSHOT_MANIFEST, manifest, fsync=True, indent=1)
    return snap


def read_manifest(snapshot_dir: str | Path) -> dict:
    """The manifest of a complete snapshot (SelectorError if absent or malformed)."""
    path = Path(snapshot_dir) / SNAPSHOT_MANIFEST
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise SelectorError(f"{path}: no complete snapshot ({type(exc).__name__})") from None
