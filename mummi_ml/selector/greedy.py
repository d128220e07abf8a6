"""Exact greedy farthest-point selection with lazy evaluation, distributed over MPI ranks.

Each rank holds its candidates (:class:`CandidatePool`); every rank holds the whole selected
set. Novelty only falls as picks are made, so a value counted against the first picks only is an
upper bound (a *bound*) of the true one. Per rank and class ``c`` a threshold ``T[c]`` splits the
candidates: those in the *active set* (:class:`ActiveSet`) have exact novelty and are updated
after every pick; every other candidate of class c has a bound ``<= T[c]`` and waits, ordered by
bound (:mod:`mummi_ml.selector.bounds`). The active set's best candidate is the rank's exact
maximum as soon as its novelty is strictly above ``T``; otherwise ``T`` is lowered by a step
(3%), and the waiting candidates above the new threshold are brought up to date against the
picks they missed, in blocks of picks, each stopping as soon as its bound falls to the threshold
(most need a few blocks, not one distance per pick). Active candidates whose novelty
falls to the threshold go back to waiting. A pick therefore touches the candidates whose novelty
is near the top, not the pool. The global maximum is one ``Allgather`` of each rank's best
(score, id, class, location, embedding); ties go to the smallest patch id; every rank appends
the winner to its selected set and updates its active set.

Classes here are *selection groups* (:mod:`mummi_ml.selector.groups`): the four protein classes
by default, or MuMMI-style queues and bins of a per-patch scalar, each with its own threshold
and quota. A *random* pick (the first ``random_picks`` of the allowed groups) takes the allowed
candidate with the smallest seeded random key instead of the most novel; the winner over ranks
is then the smallest key (one more column in the same ``Allgather``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from mummi_ml.patch.constants import N_CLASSES
from mummi_ml.selector.active import ActiveSet
from mummi_ml.selector.bounds import BoundLevels, SetAside
from mummi_ml.selector.collectives import allgather_rows, allreduce_sum, rank_size
from mummi_ml.selector.distance import (
    MAX_BLOCK,
    distances,
    distances_to_point,
    merge_nearest,
    nearest_distances,
    score,
)
from mummi_ml.selector.groups import SelectionGroups, random_keys
from mummi_ml.selector.pool import CandidatePool
from mummi_ml.selector.selected import SelectedSet

__all__ = ["Pick", "LazyGreedy", "quota_classes"]

_HEAD = 9  # score, id_hi, id_lo, class, owner, src, seg, row, novelty
_STEP = 0.03  # a lowered threshold: (1 - _STEP) x the previous one (a speed knob)
_BLOCK0, _BLOCK_MAX = 8, 64  # picks per catch-up block: first, largest


def _count_picks(z: np.ndarray, dk: np.ndarray, seen: np.ndarray, picks: np.ndarray,
                 lo: int) -> np.ndarray:
    """``dk`` (``[c, kk]``) with the picks ``lo, lo+1, ...`` (embeddings ``picks``) counted in.

    Rows whose ``seen`` is above ``lo`` recompute a few picks they have already counted: a
    recomputed distance is bit-identical, so with ``kk == 1`` the minimum is unchanged, and with
    ``kk > 1`` those columns are masked so that no pick is counted twice in the k nearest.
    """
    if dk.shape[1] == 1:
        return np.minimum(dk, nearest_distances(z, picks)[:, None])
    d = distances(z, picks)
    d[np.arange(len(picks))[None, :] < (seen - lo)[:, None]] = np.inf
    return merge_nearest(dk, d)


@dataclass(frozen=True)
class Pick:
    """One selected patch (a handful per round, so a small object is fine)."""

    seq: int  # index in the selected set
    id: int
    cls: int
    novelty: float  # score when picked (d_z units; inf for the first pick of a campaign)
    owner: int  # rank that held it
    src: int
    seg: int
    row: int


def quota_classes(
    quotas: np.ndarray | None, counts: np.ndarray, available: np.ndarray
) -> np.ndarray | None:
    """Classes a pick may come from: bool ``[N_CLASSES]``, or None if nothing is available.

    Without quotas: every class with candidates. With quotas (weights ``[N_CLASSES]``): the class
    furthest below its target share ``q_c * (picks + 1) - picks_c`` among those with candidates
    and a positive weight (ties: lowest class); if none has both, any class with candidates.
    """
    has = available > 0
    if not has.any():
        return None
    if quotas is None:
        return has
    wanted = has & (quotas > 0)
    if not wanted.any():
        return has
    deficit = quotas * (counts.sum() + 1) - counts
    deficit = np.where(wanted, deficit, -np.inf)
    out = np.zeros(N_CLASSES, dtype=bool)
    out[int(np.argmax(deficit))] = True
    return out


class LazyGreedy:
    """Selection over a rank's pool; every method is collective over ``comm`` (None: one rank).

    Args:
        pool: this rank's candidates.
        selected: the selected set (identical on every rank).
        comm: mpi4py communicator of the selector ranks, or None.
        frontier_size: the least number of waiting candidates a lowered threshold brings in (a
            speed knob; the picks never depend on it).
        quotas: class weights ``[N_CLASSES]`` (normalised here) or None (ignored when
            ``groups`` is given).
        groups: the selection groups (queues, bins, quotas, random picks); default: the four
            classes with ``quotas``. The pool's ``classes`` hold group ids.
    """

    def __init__(
        self,
        pool: CandidatePool,
        selected: SelectedSet,
        comm: Any = None,
        frontier_size: int = 1024,
        quotas: np.ndarray | list[float] | None = None,
        groups: SelectionGroups | None = None,
    ):
        self.pool, self.selected, self.comm = pool, selected, comm
        self.rank, self.size = rank_size(comm)
        self.k0 = int(frontier_size)
        self.groups = groups if groups is not None else SelectionGroups.classes(quotas)
        self.quotas = self.groups.queue_share
        self.stats = {"distances": 0, "lowered": 0, "rebuilt": 0, "active_peak": 0}
        self._active: ActiveSet | None = None
        self._rand: dict[int, list] = {}

    # ---- local bookkeeping -------------------------------------------------------------------
    def _mode(self, m: int) -> int:
        return 0 if self.pool.kk == 1 or m < self.pool.kk else 1

    def refresh(self, idx: np.ndarray) -> None:
        """Bring candidates ``idx`` up to date with every pick (exact novelty afterwards)."""
        p, s = self.pool, self.selected
        m = len(s)
        idx = idx[p.seen[idx] < m]
        if len(idx) == 0:
            return
        # rows in order of the picks they have seen; each chunk starts at its first row's
        # count, so a row recomputes at most ~25% more picks than it missed (see _count_picks)
        idx = idx[np.argsort(p.seen[idx], kind="stable")]
        seen = p.seen[idx]
        a = 0
        while a < len(idx):
            lo = int(seen[a])
            rows = max(1, MAX_BLOCK // max(1, m - lo))
            b = min(a + rows, int(np.searchsorted(seen, lo + max(8, (m - lo) // 4), "right")))
            ch = idx[a:b]
            self.stats["distances"] += len(ch) * (m - lo)
            p.dk[ch] = _count_picks(p.z[ch], p.dk[ch], seen[a:b], s.z[lo:m], lo)
            a = b
        p.seen[idx] = m

    def refresh_all(self) -> None:
        """Make every candidate's novelty exact (before eviction by least novelty)."""
        self.refresh(np.arange(len(self.pool)))

    def _write_back(self, pos: np.ndarray) -> np.ndarray:
        """Write the exact novelty of active positions ``pos`` (bool ``[n]``) back to the pool,
        skipping picked rows; returns the written rows' positions."""
        a = self._active
        pos = np.flatnonzero(pos & (a.dk[: a.n, 0] != -np.inf))
        i = a.idx[pos]
        self.pool.dk[i] = a.dk[pos]
        self.pool.seen[i] = len(self.selected)
        return pos

    def _flush(self) -> None:
        """Write the whole active set back to the pool and empty it."""
        a = self._active
        if a is None or a.n == 0:
            return
        self._write_back(np.ones(a.n, dtype=bool))
        a.n = 0

    def _rebuild(self) -> None:
        """Every live candidate waits, in levels by bound; nothing is active; ``T`` = the
        largest bound per class."""
        self._flush()
        self.stats["rebuilt"] += 1
        p, m = self.pool, len(self.selected)
        self._score_mode = self._mode(m)
        self._active = ActiveSet(p.dim, p.kk)
        if m == 0:  # every novelty is inf: the first pick is the smallest id (see local_best)
            return
        G = self.groups.n
        self._levels = BoundLevels(score(p.dk, m), p.classes, self._alive, G)
        self._aside = SetAside(self._levels.top, G)
        self._T = np.array([self._levels.threshold(c) for c in range(G)])

    def _catch_up(self, rows: np.ndarray) -> None:
        """Bring waiting candidates ``rows`` up to date against the picks they missed, in
        blocks of picks; a candidate stops (is set aside again) as soon as its bound is at or
        below its class's threshold. Those still above it when exact join the active set.

        The rows are gathered once into local arrays (sorted by picks seen, so the rows that
        miss a block are a prefix) and written back once."""
        p, s, m = self.pool, self.selected, len(self.selected)
        if len(rows) == 0:
            return
        rows = rows[np.argsort(p.seen[rows], kind="stable")]
        seen = p.seen[rows]
        cls = p.classes[rows]
        z = np.take(p.z, rows, axis=0).astype(np.float64)
        dk = np.take(p.dk, rows, axis=0)
        stop = self._T[cls]
        out_i, out_dk, out_seen, out_b, out_c = [], [], [], [], []
        block, a = _BLOCK0, 0  # rows[a:] still wait for the picks after their seen[]
        while a < len(rows) and seen[a] < m:
            lo = int(seen[a])
            hi = min(m, lo + block)
            e = a + int(np.searchsorted(seen[a:], hi, side="left"))  # rows[a:e] miss picks < hi
            dk[a:e] = _count_picks(z[a:e], dk[a:e], seen[a:e], s.z[lo:hi], lo)
            self.stats["distances"] += (e - a) * (hi - lo)
            seen[a:e] = hi
            b = score(dk[a:e], m)
            low = b <= stop[a:e]
            if low.any():  # set those aside; move the others to the end of rows[a:e]
                out_i.append(rows[a:e][low])
                out_dk.append(dk[a:e][low])
                out_seen.append(seen[a:e][low])
                out_b.append(b[low])
                out_c.append(cls[a:e][low])
                up = np.flatnonzero(~low) + a
                a2 = e - len(up)
                for arr in (rows, seen, cls, z, dk, stop):
                    arr[a2:e] = arr[up]
                a = a2
            block = min(2 * block, _BLOCK_MAX)
        rows, seen, cls, z, dk = rows[a:], seen[a:], cls[a:], z[a:], dk[a:]
        if len(rows):
            b = score(dk, m)
            low = b <= self._T[cls]
            out_i.append(rows[low])
            out_dk.append(dk[low])
            out_seen.append(seen[low])
            out_b.append(b[low])
            out_c.append(cls[low])
            up = ~low
            self._active.add(rows[up], z[up], dk[up], cls[up])
            self.stats["active_peak"] = max(self.stats["active_peak"], self._active.n)
        if out_i:
            i = np.concatenate(out_i)
            p.dk[i] = np.concatenate(out_dk)
            p.seen[i] = np.concatenate(out_seen)
            self._aside.push(i, np.concatenate(out_b), np.concatenate(out_c))

    def _lower(self, allowed: np.ndarray) -> None:
        """Lower the allowed classes' thresholds by ``_STEP`` (relative to the largest of them)
        and catch up the waiting candidates above the new threshold."""
        self.stats["lowered"] += 1
        classes = np.flatnonzero(allowed)
        top = min(float(self._T[classes].max()), np.finfo(np.float64).max)  # inf bounds
        t = (1.0 - _STEP) * top if top > 0 else -np.inf  # zero novelty: take everything
        T = self._T.copy()
        rows = []
        for c in classes:
            rows.append(self._levels.take(c, t, self.k0))
            T[c] = min(T[c], t)
        rows.append(self._aside.take(T))
        for c in classes:  # tighter where nothing waiting is near t
            T[c] = min(T[c], max(self._levels.threshold(c), self._aside.upper_bound(c)))
        self._T = T
        rows = np.concatenate(rows)
        self._catch_up(rows[self._alive[rows]])  # a random pick may have waited here

    def _drop_fallen(self) -> None:
        """Set aside the active candidates whose novelty fell to their class's threshold (when
        they are a quarter of the active set: a compaction moves every array)."""
        a = self._active
        sc = a.scores(len(self.selected))
        fallen = sc <= self._T[a.cls[: a.n]]
        n_fallen = int(np.count_nonzero(fallen))
        if n_fallen <= a.n // 4 + 16:
            return
        pos = self._write_back(fallen)
        self._aside.push(a.idx[pos], sc[pos], a.cls[pos])
        a.keep(~fallen)

    def local_best(self, allowed: np.ndarray) -> int:
        """Index of this rank's exact best candidate among ``allowed`` classes, or -1."""
        p = self.pool
        m = len(self.selected)
        if m == 0:
            live = np.flatnonzero(self._alive & allowed[p.classes])
            self._best_score = np.inf
            return int(live[np.argmin(p.ids[live])]) if len(live) else -1
        a = self._active
        while True:
            sc = a.scores(m)
            if not allowed.all():
                sc[~allowed[a.cls[: a.n]]] = -np.inf
            top = sc.max() if len(sc) else -np.inf
            t = float(self._T[allowed].max())
            if t == -np.inf or top > t:
                if top == -np.inf:
                    return -1
                cand = np.flatnonzero(sc == top)  # ties: the smallest patch id
                self._best_pos = int(cand[np.argmin(p.ids[a.idx[cand]])])
                self._best_score = float(top)
                return int(a.idx[self._best_pos])
            self._lower(allowed)

    def local_random(self, allowed: np.ndarray) -> int:
        """Index of this rank's allowed candidate with the smallest random key, or -1; sets
        ``_best_score`` (minus the key's top 53 bits, so that the largest wins) and
        ``_best_novelty`` (its exact novelty)."""
        p, m = self.pool, len(self.selected)
        best: tuple[int, int, int] | None = None  # (key, id, pool index)
        for g in np.flatnonzero(allowed):
            head = self._random_head(int(g))
            if head is not None and (best is None or head < best):
                best = head
        if best is None:
            return -1
        i = best[2]
        self._best_score = -float(best[0] >> 11)
        self._best_pos = -1
        if m == 0:
            self._best_novelty = np.inf
            return i
        a = self._active
        pos = np.flatnonzero(a.idx[: a.n] == i) if a is not None else np.zeros(0, np.int64)
        if len(pos) and a.dk[pos[0], 0] != -np.inf:
            self._best_pos = int(pos[0])
            self._best_novelty = float(a.scores(m)[self._best_pos])
        else:
            self.refresh(np.array([i]))
            self._best_novelty = float(score(p.dk[i : i + 1], m)[0])
        return i

    def _random_head(self, g: int) -> tuple[int, int, int] | None:
        """(key, id, pool index) of group g's live candidate with the smallest random key
        (ties: smallest id), or None. Each group's candidates are sorted by (key, id) once per
        :meth:`select` call, when first needed; a pointer skips those picked since."""
        p = self.pool
        if g not in self._rand:
            members = np.flatnonzero(self._alive & (p.classes == g))
            keys = random_keys(p.ids[members], self.groups.seed)
            order = np.lexsort((p.ids[members], keys))
            self._rand[g] = [members[order], keys[order], 0]
        rows, keys, ptr = self._rand[g]
        while ptr < len(rows) and not self._alive[rows[ptr]]:
            ptr += 1
        self._rand[g][2] = ptr
        if ptr == len(rows):
            return None
        i = int(rows[ptr])
        return int(keys[ptr]), int(p.ids[i]), i

    # ---- the collective selection ---------------------------------------------------------------
    def select(self, k: int) -> list[Pick]:
        """Pick up to ``k`` patches over all ranks (fewer if the pools run dry). Collective.

        The picks are appended to the selected set on every rank and removed from the owner's pool.
        """
        p, s = self.pool, self.selected
        d = p.dim
        G = self.groups.n
        self._alive = np.ones(len(p), dtype=bool)
        self._rand: dict[int, list] = {}  # group -> [rows by random key, keys, pointer]
        available = allreduce_sum(
            self.comm, np.bincount(p.classes.astype(np.int64), minlength=G)[:G]
        )
        if k <= 0 or available.sum() == 0:
            return []
        self._rebuild()
        counts = np.bincount(s.classes.astype(np.int64), minlength=G)[:G]
        picks: list[Pick] = []
        for _ in range(k):
            allowed = self.groups.allowed(counts, available)
            if allowed is None:
                break
            if self._mode(len(s)) != self._score_mode:
                self._rebuild()
            if self.groups.is_random(counts, allowed):
                i = self.local_random(allowed)
            else:
                i = self.local_best(allowed)
                self._best_novelty = self._best_score
            row = np.full(_HEAD + d, -np.inf)
            if i >= 0:
                cid = int(p.ids[i])
                row[:_HEAD] = (
                    self._best_score, cid >> 32, cid & 0xFFFFFFFF,
                    p.classes[i], self.rank, p.src[i], p.seg[i], p.row[i], self._best_novelty,
                )
                row[_HEAD:] = p.z[i]
            rows, _ = allgather_rows(self.comm, row[None, :])
            top = rows[:, 0].max()
            if top == -np.inf:
                break
            cand = np.flatnonzero(rows[:, 0] == top)
            exact = np.array(
                [(int(rows[c, 1]) << 32) | int(rows[c, 2]) for c in cand], dtype=np.uint64
            )  # ties: smallest patch id (R entries at most)
            w = cand[int(np.argmin(exact))]
            r = rows[w]
            pid = (int(r[1]) << 32) | int(r[2])
            pick = Pick(len(s), pid, int(r[3]), float(r[8]), int(r[4]), int(r[5]), int(r[6]),
                        int(r[7]))
            zp = r[_HEAD:].astype(np.float32)
            s.append(zp[None, :], ids=np.array([pid], np.uint64), classes=[pick.cls],
                     novelty=[pick.novelty], owner=[pick.owner], src=[pick.src], seg=[pick.seg],
                     row=[pick.row])
            picks.append(pick)
            counts[pick.cls] += 1
            available[pick.cls] -= 1
            if pick.owner == self.rank:
                self._alive[i] = False
                if len(s) > 1 and self._best_pos >= 0:
                    self._active.mark_picked(self._best_pos)
            if len(s) == 1:  # first pick of the campaign: every bound was inf and every row
                # has seen no pick, so the whole pool is updated at once, without gathers
                p.dk[:] = merge_nearest(p.dk, distances_to_point(p.z, zp)[:, None])
                p.seen[:] = 1
                self.stats["distances"] += len(p)
                self._rebuild()
                continue
            self._active.update(zp)
            self.stats["distances"] += self._active.n
            self._drop_fallen()
        self._flush()
        p.remove(np.flatnonzero(~self._alive))
        return picks
