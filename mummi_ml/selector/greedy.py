"""Exact greedy farthest-point selection with lazy evaluation, distributed over MPI ranks.

Each rank holds its candidates (:class:`CandidatePool`); every rank holds the whole selected
set. Novelty only falls as picks are made, so a stale value is an upper bound of the true one.
Per rank, a small *frontier* of candidates (the top ``frontier_size`` by bound) is kept exact;
``T[c]`` is the largest bound of the class-c candidates outside it. The frontier's best candidate
is the rank's exact maximum as soon as its score is strictly above ``T``; otherwise the frontier
grows (its new members are brought up to date against the picks they missed). A pick therefore
touches ``O(frontier)`` candidates, not the pool. The global maximum is one ``Allgather`` of each
rank's best (score, id, class, location, embedding); ties go to the smallest patch id; every rank
appends the winner to its selected set and lowers its frontier's novelty.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from mummi_ml.patch.constants import N_CLASSES
from mummi_ml.selector.collectives import allgather_rows, allreduce_sum, rank_size
from mummi_ml.selector.distance import MAX_BLOCK, best_of, distances, merge_nearest, score
from mummi_ml.selector.pool import CandidatePool
from mummi_ml.selector.selected import SelectedSet

__all__ = ["Pick", "LazyGreedy", "quota_classes"]

_HEAD = 8  # score, id_hi, id_lo, class, owner, src, seg, row


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
        frontier_size: candidates kept exact (a speed knob; the picks never depend on it).
        quotas: class weights ``[N_CLASSES]`` (normalised here) or None.
    """

    def __init__(
        self,
        pool: CandidatePool,
        selected: SelectedSet,
        comm: Any = None,
        frontier_size: int = 1024,
        quotas: np.ndarray | list[float] | None = None,
    ):
        self.pool, self.selected, self.comm = pool, selected, comm
        self.rank, self.size = rank_size(comm)
        self.k0 = int(frontier_size)
        self.quotas = None if quotas is None else np.asarray(quotas, float) / np.sum(quotas)
        self.stats = {"refreshed": 0, "grown": 0, "rebuilt": 0, "shrunk": 0}

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
        self.stats["refreshed"] += len(idx)
        # rows in order of the picks they have seen; each chunk starts at its first row's
        # count, so a row recomputes at most ~25% more picks than it missed (a recomputed
        # distance is bit-identical, and the k-nearest mask below skips it)
        idx = idx[np.argsort(p.seen[idx], kind="stable")]
        seen = p.seen[idx]
        a = 0
        while a < len(idx):
            lo = int(seen[a])
            rows = max(1, MAX_BLOCK // max(1, m - lo))
            b = min(a + rows, int(np.searchsorted(seen, lo + max(8, (m - lo) // 4), "right")))
            ch = idx[a:b]
            d = distances(p.z[ch], s.z[lo:m])  # [c, m - lo]
            if p.kk > 1:  # do not count a pick twice in the k nearest
                d[np.arange(m - lo)[None, :] < (seen[a:b] - lo)[:, None]] = np.inf
            p.dk[ch] = merge_nearest(p.dk[ch], d)
            a = b
        p.seen[idx] = m

    def refresh_all(self) -> None:
        """Make every candidate's novelty exact (before eviction by least novelty)."""
        self.refresh(np.arange(len(self.pool)))

    def _rebuild(self) -> None:
        """Start a frontier: per class, the live candidates sorted by bound in a head block of
        ``8 * frontier_size`` (the rest, the tail, is re-split when the head runs out)."""
        self.stats["rebuilt"] += 1
        m = len(self.selected)
        self._score_mode = self._mode(m)
        self._front = np.zeros(0, dtype=np.int64)
        live = np.flatnonzero(self._alive)
        if m == 0:  # every novelty is inf: the first pick is the smallest id (see local_best)
            return
        s = score(self.pool.dk[live], m)
        cls = self.pool.classes[live]
        self._blocks = []
        self._recycled = [(live[:0], s[:0], 0)] * N_CLASSES
        for c in range(N_CLASSES):
            sel = cls == c
            self._blocks.append(self._split(live[sel], s[sel]))

    def _split(self, idx: np.ndarray, s: np.ndarray, b: int = 0) -> list:
        """[head indices sorted by bound desc, their bounds, pointer, tail indices, tail bounds]:
        a head of ``b`` (default ``8 * frontier_size``) candidates; each re-split of the tail
        doubles it, so a cold start that walks deep into the pool re-splits O(log n) times."""
        b = max(b, 8 * self.k0)
        if len(idx) <= b:
            o = np.argsort(-s, kind="stable")
            return [idx[o], s[o], 0, idx[:0], s[:0]]
        part = np.argpartition(-s, b - 1)
        h, t = part[:b], part[b:]
        o = np.argsort(-s[h], kind="stable")
        return [idx[h][o], s[h][o], 0, idx[t], s[t]]

    def _threshold(self, c: int) -> float:
        """Largest bound of a class-c candidate outside the frontier (-inf if none)."""
        head, hs, ptr, tail, ts = self._blocks[c]
        if ptr < len(head):
            t = float(hs[ptr])
        else:
            t = float(ts.max()) if len(tail) else -np.inf
        rec, rs, rptr = self._recycled[c]
        return max(t, float(rs[rptr])) if rptr < len(rec) else t

    def _take(self, c: int, need: int) -> np.ndarray:
        """The next ``need`` candidates of class c by bound from the blocks and the recycled."""
        out = []
        rec, rs, rptr = self._recycled[c]
        out.append(rec[rptr : rptr + need])
        self._recycled[c] = (rec, rs, rptr + len(out[0]))
        while need > 0:
            blk = self._blocks[c]
            head, _, ptr, tail, ts = blk
            if ptr < len(head):
                got = head[ptr : ptr + need]
                blk[2] = ptr + len(got)
                need -= len(got)
                out.append(got)
            elif len(tail):
                self._blocks[c] = self._split(tail, ts, 2 * len(head))
            else:
                break
        return np.concatenate(out)

    def _grow(self, allowed: np.ndarray) -> None:
        self.stats["grown"] += 1
        need = max(self.k0, len(self._front))
        new = np.concatenate([self._take(c, need) for c in np.flatnonzero(allowed)])
        self.refresh(new)
        self._front = np.concatenate([self._front, new])

    def _shrink(self) -> None:
        """Keep the best ``frontier_size`` of a grown frontier; the rest (exact bounds) go back,
        sorted, into each class's recycled list."""
        self.stats["shrunk"] += 1
        f = self._front
        s = score(self.pool.dk[f], len(self.selected))
        part = np.argpartition(-s, self.k0 - 1)
        self._front = f[part[: self.k0]]
        back, bs = f[part[self.k0 :]], s[part[self.k0 :]]
        cls = self.pool.classes[back]
        for c in range(N_CLASSES):
            sel = cls == c
            if not sel.any():
                continue
            rec, rs, rptr = self._recycled[c]
            idx = np.concatenate([rec[rptr:], back[sel]])
            sc = np.concatenate([rs[rptr:], bs[sel]])
            o = np.argsort(-sc, kind="stable")
            self._recycled[c] = (idx[o], sc[o], 0)

    def local_best(self, allowed: np.ndarray) -> int:
        """Index of this rank's exact best candidate among ``allowed`` classes, or -1."""
        p = self.pool
        if len(self.selected) == 0:
            live = np.flatnonzero(self._alive & allowed[p.classes])
            return int(live[np.argmin(p.ids[live])]) if len(live) else -1
        while True:
            f = self._front[allowed[p.classes[self._front]]]
            t = max((self._threshold(c) for c in np.flatnonzero(allowed)), default=-np.inf)
            s = score(p.dk[f], len(self.selected))
            b = best_of(s, p.ids[f])
            sb = s[b] if b >= 0 else -np.inf
            if t == -np.inf or sb > t:
                return int(f[b]) if b >= 0 else -1
            self._grow(allowed)

    # ---- the collective selection ---------------------------------------------------------------
    def select(self, k: int) -> list[Pick]:
        """Pick up to ``k`` patches over all ranks (fewer if the pools run dry). Collective.

        The picks are appended to the selected set on every rank and removed from the owner's pool.
        """
        p, s = self.pool, self.selected
        d = p.dim
        self._alive = np.ones(len(p), dtype=bool)
        available = allreduce_sum(
            self.comm, np.bincount(p.classes.astype(np.int64), minlength=N_CLASSES)[:N_CLASSES]
        )
        if k <= 0 or available.sum() == 0:
            return []
        self._rebuild()
        counts = s.class_counts()
        picks: list[Pick] = []
        for _ in range(k):
            allowed = quota_classes(self.quotas, counts, available)
            if allowed is None:
                break
            if self._mode(len(s)) != self._score_mode:
                self._rebuild()
            i = self.local_best(allowed)
            row = np.full(_HEAD + d, -np.inf)
            if i >= 0:
                cid = int(p.ids[i])
                row[:_HEAD] = (
                    score(p.dk[i : i + 1], len(s))[0], cid >> 32, cid & 0xFFFFFFFF,
                    p.classes[i], self.rank, p.src[i], p.seg[i], p.row[i],
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
            pick = Pick(len(s), pid, int(r[3]), float(r[0]), int(r[4]), int(r[5]), int(r[6]),
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
                self._front = self._front[self._front != i]
            if len(s) == 1:  # first pick of the campaign: every bound was inf and every row
                # has seen no pick, so the whole pool is updated at once, without gathers
                p.dk[:] = merge_nearest(p.dk, distances(p.z, zp[None, :]))
                p.seen[:] = 1
                self.stats["refreshed"] += len(p)
                self._rebuild()
                continue
            f = self._front
            p.dk[f] = merge_nearest(p.dk[f], distances(p.z[f], zp[None, :]))
            p.seen[f] = len(s)
            if len(f) > 4 * self.k0:
                self._shrink()
        p.remove(np.flatnonzero(~self._alive))
        return picks
