"""MuMMI's ``PatchSelector`` API, in-process, backed by mummi-ml's pool, exact greedy and metric.

MuMMI's workflow manager (``mummi_ras``) builds ``PatchSelector(stype, workspace, config)``,
registers it on a ``multiprocessing`` manager and calls, through proxies,
``add_candidates(patches)``, ``select(k) -> [patch names]``, ``get_weights(names) -> (names,
float32 weights of mean 1)``, ``checkpoint()``, ``restore()``, ``test()``. This class has the
same names and meanings; swapping it in is one import line on MuMMI's side (docs/coupling.md).

Patches are duck-typed (mummi_ras is never imported): an object with ``.id`` (str),
``.concentrations`` (``[37, 37, 14]``), and its proteins as ``.type()`` (MuMMI's patch type
string, e.g. ``"ras1raf0"``) or ``.protein_counts()`` / ``.protein_counts`` (``(n_ras,
n_raf)``); a binned queue reads ``.distance_between_dimers()`` (nm) if the patch has it.
:class:`MummiPatch` is such an object.

Selection is the exact greedy of the selector service (one process, no MPI, no payloads: the
manager keeps its patches) with MuMMI's four queues (:func:`mummi_queues`) by default. String
names map to sequential uint64 ids in arrival order; the state is one HDF5 file in the
workspace, written atomically by :meth:`PatchSelector.checkpoint` (with ``weights.json``).
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from multiprocessing.managers import BaseManager
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from mummi_ml.durable import atomic_path
from mummi_ml.errors import MummiMLError
from mummi_ml.patch.h5io import open_h5_self_contained
from mummi_ml.selector.config import SelectorConfig
from mummi_ml.selector.distance import score
from mummi_ml.selector.greedy import LazyGreedy
from mummi_ml.selector.groups import QueuesConfig, SelectionGroups, mummi_queues
from mummi_ml.selector.importance import importance_weights
from mummi_ml.selector.live_weights import normalise_weights, write_weights
from mummi_ml.selector.nn_search import NearestSelected
from mummi_ml.selector.pool import CandidatePool
from mummi_ml.selector.selected import SelectedSet

__all__ = ["PatchSelector", "MummiPatch", "SelectorManager", "STATE_FILE"]

log = logging.getLogger("mummi_ml.selector")

STATE_FILE = "mummi-ml-selector.h5"
_TYPE = re.compile(r"^ras(\d+)raf(\d+)$")


@dataclass
class MummiPatch:
    """A minimal patch object with the attributes :class:`PatchSelector` reads (picklable).

    Attributes:
        id: the patch name (str). concentrations: float32 ``[37, 37, 14]``.
        n_ras, n_raf: protein counts. dimer_distance: RAS-RAS distance (nm), NaN if none.
    """

    id: str
    concentrations: np.ndarray
    n_ras: int = 0
    n_raf: int = 0
    dimer_distance: float = float("nan")
    extra: dict = field(default_factory=dict)

    def type(self) -> str:
        """MuMMI's patch type, ``ras<n_ras>raf<n_raf>``."""
        return f"ras{self.n_ras}raf{self.n_raf}"

    def distance_between_dimers(self) -> float:
        return self.dimer_distance


def _patch_type(p: Any) -> str:
    t = getattr(p, "type", None)
    if callable(t):
        return str(getattr(t(), "value", t()))
    counts = getattr(p, "protein_counts", None)
    if counts is not None:
        a, b = counts() if callable(counts) else counts
        return f"ras{int(a)}raf{int(b)}"
    raise TypeError(f"patch {getattr(p, 'id', p)!r}: needs .type() or .protein_counts")


def _dimer_distance(p: Any) -> float:
    f = getattr(p, "distance_between_dimers", None)
    if f is None:
        return float("nan")
    try:
        v = float(f() if callable(f) else f)
    except (TypeError, ValueError, ArithmeticError):
        return float("nan")
    return v if math.isfinite(v) else float("nan")


class PatchSelector:
    """MuMMI's patch selector, backed by mummi-ml (see the module doc).

    Args:
        stype: ``"importance"`` (novelty, the exact greedy) or ``"random"`` (every pick random).
        workspace: directory of the checkpoint and ``weights.json`` (created).
        config: MuMMI's keys ``buffer_sz`` (candidates kept), ``min_cands_b4_sel`` (no pick
            before this many candidates were added), ``min_rand_b4_importance`` (random picks
            per queue first), ``path`` and ``encoder`` (the model directory ``path/encoder``);
            and optionally ``mummi_ml``: a dict of ``selector:`` keys (e.g. ``{"embedding":
            "mean_concentrations", "queues": {...}, "random_seed": 3}``).
        embed: ``x [n, 37, 37, 14] -> z [n, d]`` to use instead of the configured embedding.
    """

    def __init__(self, stype: str, workspace: str, config: dict | None = None,
                 embed: Callable[[np.ndarray], np.ndarray] | None = None):
        if stype not in ("importance", "random"):
            raise ValueError(f"stype: expected 'importance' or 'random', got {stype!r}")
        config = dict(config or {})
        self.type = stype
        self.workspace = Path(workspace)
        self.workspace.mkdir(parents=True, exist_ok=True)
        sel = dict(config.get("mummi_ml") or {})
        if "buffer_sz" in config and int(config["buffer_sz"]) > 0:
            sel.setdefault("capacity_per_rank", int(config["buffer_sz"]))
        if "min_rand_b4_importance" in config:
            sel.setdefault("random_picks", int(config["min_rand_b4_importance"]))
        if stype == "random":
            sel["random_picks"] = 2**62
        if config.get("path") and config.get("encoder"):
            sel.setdefault("model_dir", str(Path(config["path"]) / config["encoder"]))
        if "queues" not in sel:
            sel["queues"] = mummi_queues().model_dump()
        self.cfg = SelectorConfig(**sel)
        self.min_cands = int(config.get("min_cands_b4_sel", 0))
        self.groups = SelectionGroups.from_config(self.cfg)
        if embed is not None:
            self._embed, self.dim, self.version = embed, None, "injected"
        else:
            from mummi_ml.selector.embedder import make_embedding

            e = make_embedding(self.cfg)
            self._embed, self.dim, self.version = e.embed, e.dim, e.version
        self.kk = self.cfg.knn_k if self.cfg.novelty == "mean_knn" else 1
        self.nn = NearestSelected(self.kk, self.cfg.nn_backend)
        self.names: list[str] = []  # id -> name
        self.ids: dict[str, int] = {}  # name -> id
        self.n_added = 0
        self.pool: CandidatePool | None = None
        self.selected: SelectedSet | None = None
        self.engine: LazyGreedy | None = None
        if self.dim is not None:
            self._reset(self.dim)

    def _reset(self, dim: int) -> None:
        self.dim = int(dim)
        self.pool, self.selected = CandidatePool(self.dim, self.kk), SelectedSet(self.dim)
        self.engine = LazyGreedy(self.pool, self.selected, None, self.cfg.frontier_size,
                                 groups=self.groups)

    # ---- MuMMI's API -------------------------------------------------------------------------
    def add_candidates(self, patches: Sequence[Any]) -> None:
        """Embed patches and add them as candidates (a known name is skipped with a warning)."""
        if not isinstance(patches, (list, tuple)):
            raise TypeError(f"patches: expected a list, got {type(patches).__name__}")
        fresh, seen = [], set()
        for p in patches:
            name = getattr(p, "id", None)
            if not isinstance(name, str) or not name:
                raise TypeError(f"patch id: expected a non-empty str, got {name!r}")
            if name in self.ids or name in seen:
                log.warning("patch %s added twice: ignored", name)
                continue
            seen.add(name)
            fresh.append(p)
        if not fresh:
            return
        x = np.stack([np.asarray(p.concentrations, np.float32) for p in fresh])
        z = np.asarray(self._embed(x), np.float32)
        if self.engine is None:
            self._reset(z.shape[1])
        types = [_patch_type(p) for p in fresh]
        q = self.groups.queue_of_types(types)
        dist = np.array([_dimer_distance(p) for p in fresh])
        cls = np.empty(len(fresh), np.int64)
        for qi in np.unique(q):
            m = q == qi
            cls[m] = self.groups.first_group(int(qi)) + self.groups.bin_of(int(qi), dist[m])
        ids = np.arange(len(self.names), len(self.names) + len(fresh), dtype=np.uint64)
        for p in fresh:
            self.ids[p.id] = len(self.names)
            self.names.append(p.id)
        s = self.selected
        self.pool.add(z, self.nn.query(z, s.z), ids=ids, classes=cls.astype(np.int8),
                      seen=np.full(len(fresh), len(s), np.int64), src=0, seg=0,
                      row=np.zeros(len(fresh), np.int32))
        self.n_added += len(fresh)
        self._evict()

    def _evict(self) -> None:
        extra = len(self.pool) - self.cfg.capacity_per_rank
        if extra <= 0:
            return
        self.engine.refresh_all()
        sc = score(self.pool.dk, len(self.selected))
        order = np.lexsort((np.iinfo(np.uint64).max - self.pool.ids, sc))  # least novel first
        self.pool.remove(order[:extra])

    def select(self, k: int, do_confirm: bool = True) -> list[str]:
        """The names of up to ``k`` picks (exact greedy, queue shares, random picks first);
        ``do_confirm`` is accepted for MuMMI's signature (picks are always confirmed)."""
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 0:
            raise ValueError(f"k: expected an integer >= 0, got {k!r}")
        if self.engine is None or k == 0 or self.n_added < self.min_cands:
            return []
        return [self.names[p.id] for p in self.engine.select(int(k))]

    def confirm_selection(self, patch_ids: list[str]) -> None:
        """MuMMI's confirmation step: nothing to do (every pick is final)."""

    def num_candidates(self) -> int:
        return 0 if self.pool is None else len(self.pool)

    def num_selected(self) -> int:
        return 0 if self.selected is None else len(self.selected)

    def get_weights(self, patches: Sequence[str] | np.ndarray | None = None
                    ) -> tuple[np.ndarray, np.ndarray]:
        """``(names, float32 weights of mean 1)`` of the selected patches (or of ``patches``,
        in their order; ValueError names one that was not selected)."""
        if self.selected is None or len(self.selected) == 0:
            return np.array([], dtype=object), np.zeros(0, np.float32)
        raw = importance_weights(self.pool.z, self.selected.z)
        w = normalise_weights(raw)
        names = np.array([self.names[int(i)] for i in self.selected.ids], dtype=object)
        if patches is None:
            return names, w
        pos = {n: i for i, n in enumerate(names)}
        want = [str(p) for p in np.asarray(patches, dtype=object).tolist()]
        missing = [p for p in want if p not in pos]
        if missing:
            raise ValueError(f"get_weights: {missing[0]!r} is not a selected patch")
        idx = np.array([pos[p] for p in want], np.int64)
        return names[idx], w[idx]

    def test(self) -> bool:
        """Consistency: every id named once, picks and candidates disjoint and known."""
        if self.pool is None:
            return not self.names
        pool_ids = self.pool.ids.astype(np.int64)
        sel_ids = self.selected.ids.astype(np.int64)
        return (len(self.ids) == len(self.names)
                and not np.isin(pool_ids, sel_ids).any()
                and bool((pool_ids < len(self.names)).all())
                and bool((sel_ids < len(self.names)).all()))

    def checkpoint(self) -> None:
        """Write the whole state to ``workspace/mummi-ml-selector.h5`` atomically, then
        ``weights.json`` (raw and mean-1 weights by id and name)."""
        path = self.workspace / STATE_FILE
        with atomic_path(path, fsync=True) as tmp, h5py.File(tmp, "w") as f:
            f.attrs["schema"] = "mummi-ml-mummi-api"
            f.attrs["version"] = 1
            f.attrs["meta"] = json.dumps({
                "dim": self.dim, "kk": self.kk, "n_added": self.n_added, "type": self.type,
                "model_version": self.version, "groups": list(self.groups.names)})
            f.create_dataset("names", data=np.array(self.names, dtype=object),
                             dtype=h5py.string_dtype("utf-8"))
            if self.pool is not None:
                for k, v in self.pool.to_arrays().items():
                    f.create_dataset(f"pool/{k}", data=v)
                for k, v in self.selected.to_arrays().items():
                    f.create_dataset(f"selected/{k}", data=v)
        if self.selected is not None:
            raw = importance_weights(self.pool.z, self.selected.z)
            write_weights(self.workspace, self.selected.ids,
                          [self.names[int(i)] for i in self.selected.ids], raw, 0)

    def restore(self) -> bool:
        """Load the state written by :meth:`checkpoint`; False if there is none."""
        path = self.workspace / STATE_FILE
        if not path.exists():
            return False
        try:
            with open_h5_self_contained(path, "a selector state file") as f:
                meta = json.loads(f.attrs["meta"])
                names = [v.decode() if isinstance(v, bytes) else str(v) for v in f["names"][:]]
                pool = {k: v[:] for k, v in f["pool"].items()} if "pool" in f else None
                sel = {k: v[:] for k, v in f["selected"].items()} if "selected" in f else None
        except (OSError, KeyError, ValueError) as exc:
            raise MummiMLError(f"{path}: unreadable selector state ({exc})") from None
        if meta["groups"] != list(self.groups.names) or int(meta["kk"]) != self.kk:
            raise MummiMLError(f"{path}: made with other queues/bins or novelty "
                               f"({meta['groups']}, kk={meta['kk']})")
        if self.dim is not None and meta["dim"] is not None and int(meta["dim"]) != self.dim:
            raise MummiMLError(f"{path}: embedding dimension {meta['dim']}, this one {self.dim}")
        self.names = names
        self.ids = {n: i for i, n in enumerate(names)}
        self.n_added = int(meta["n_added"])
        if pool is not None:
            self._reset(int(meta["dim"]))
            self.pool = CandidatePool.from_arrays(pool, self.dim, self.kk)
            self.selected = SelectedSet.from_arrays(sel, self.dim)
            self.engine = LazyGreedy(self.pool, self.selected, None, self.cfg.frontier_size,
                                     groups=self.groups)
        return True

    @staticmethod
    def queues_config(cfg: QueuesConfig | None = None) -> dict:
        """A ``mummi_ml.queues`` value (MuMMI's four queues by default) as a plain dict."""
        return (cfg or mummi_queues()).model_dump()


class SelectorManager(BaseManager):
    """A ``multiprocessing`` manager with :class:`PatchSelector` registered (as MuMMI's
    workflow manager registers its own): ``m = SelectorManager(); m.start();
    sel = m.PatchSelector("importance", workspace, config)`` gives a proxy."""


SelectorManager.register("PatchSelector", PatchSelector)
