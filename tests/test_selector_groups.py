"""Selection groups: MuMMI's queues from patch types or producer classes, binned queues, random
picks before novelty ranking; the lazy greedy equals the reference with them, on 1 and 3 MPI
ranks too.

Run as a script (``python tests/test_selector_groups.py OUT.json SEED KK``) it is the MPI worker
the tests launch.
"""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest

N, D, ROUNDS, PER_ROUND = 2400, 6, 3, (30, 1, 25)


def _groups():
    from mummi_ml.selector.groups import SelectionGroups, mummi_queues

    return SelectionGroups.from_queues(mummi_queues(), random_picks=3, seed=99)


def _scenario(seed: int, size: int):
    """The same data on every rank: embeddings, ids, counts, scalars, arrival round, owner."""
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(N, D)).astype(np.float32)
    ids = rng.permutation(50 * N)[:N].astype(np.uint64)
    y = np.array([(0, 0), (1, 0), (1, 1), (2, 0), (2, 1), (2, 2), (3, 1)])[
        rng.choice(7, N, p=[0.2, 0.2, 0.2, 0.15, 0.1, 0.1, 0.05])]
    dist = rng.uniform(0, 24, N)
    arrival = rng.integers(0, ROUNDS, N)
    owner = rng.integers(0, size, N)
    return z, ids, y, dist, arrival, owner


# ---- configuration and classification --------------------------------------------------------

def test_mummi_queues_map_patch_types_to_their_queues():
    g = _groups()
    y = np.array([(0, 0), (1, 0), (1, 1), (2, 0), (2, 2), (3, 0), (5, 4)])
    groups = g.classify(y, bin_value=np.full(7, 1.0))
    assert [g.queue_names[g.queue[k]] for k in groups] == [
        "lipid-only", "monomers", "monomers", "dimers", "dimers", "invalid", "invalid"]


def test_a_binned_queue_puts_each_scalar_in_its_bin():
    g = _groups()  # dimers: 5 equal bins over [0, 24.21] nm
    d = np.array([0.0, 4.9, 5.0, 12.0, 24.0, 99.0, -1.0, np.nan])
    groups = g.classify(np.tile([2, 1], (8, 1)), bin_value=d)
    assert [g.names[k] for k in groups] == [
        "dimers[0]", "dimers[1]", "dimers[1]", "dimers[2]", "dimers[4]", "dimers[4]",
        "dimers[0]", "dimers[0]"]


def test_a_producer_class_overrides_the_patch_type():
    g = _groups()
    given = np.array([-1, 0, 3, 17], np.int16)  # none, lipid-only, invalid, not a queue
    groups = g.classify(np.tile([1, 0], (4, 1)), given_class=given)
    assert [g.queue_names[g.queue[k]] for k in groups] == [
        "monomers", "lipid-only", "invalid", "invalid"]


def test_queues_and_class_quotas_are_exclusive():
    from mummi_ml.selector.config import SelectorConfig
    from mummi_ml.selector.groups import mummi_queues

    with pytest.raises(ValueError, match="class_quotas and queues"):
        SelectorConfig(queues=mummi_queues(), class_quotas=[1, 1, 1, 1])


def test_bins_need_ascending_edges_and_one_share_per_bin():
    from mummi_ml.selector.groups import BinsConfig

    with pytest.raises(ValueError, match="ascending"):
        BinsConfig(edges=[0.0, 5.0, 5.0])
    with pytest.raises(ValueError, match="one per bin"):
        BinsConfig(edges=[0.0, 5.0, 10.0], shares=[1.0])


def test_the_queue_shares_of_many_picks_match_the_configured_ones():
    g = _groups()
    counts = np.zeros(g.n, np.int64)
    available = np.full(g.n, 10**6)
    for _ in range(1000):
        counts[np.flatnonzero(g.allowed(counts, available))[0]] += 1
    per_queue = np.bincount(g.queue, weights=counts) / 1000
    assert per_queue.tolist() == pytest.approx([0.1, 0.5, 0.4, 0.0], abs=0.002)
    assert counts[g.queue == 2].tolist() == [80, 80, 80, 80, 80]  # the dimer bins: equal


def test_an_empty_bin_leaves_its_share_to_the_other_bins_of_its_queue():
    g = _groups()
    counts = np.zeros(g.n, np.int64)
    available = np.full(g.n, 10**6)
    available[g.names.index("dimers[3]")] = 0
    for _ in range(1000):
        counts[np.flatnonzero(g.allowed(counts, available))[0]] += 1
    assert counts[g.queue == 2].sum() == 400
    assert counts[g.names.index("dimers[3]")] == 0


def test_random_keys_are_a_seeded_permutation():
    from mummi_ml.selector.groups import random_keys

    ids = np.arange(1000, dtype=np.uint64)
    a, b, c = random_keys(ids, 1), random_keys(ids, 1), random_keys(ids, 2)
    assert (a == b).all() and not (a == c).all()
    assert len(np.unique(a)) == 1000
    assert abs(np.corrcoef(np.argsort(a), ids.astype(float))[0, 1]) < 0.2  # not the id order


# ---- lazy greedy == reference -------------------------------------------------------------------

def _pool_of(z, ids, groups_of, kk=1):
    from mummi_ml.selector import CandidatePool, NearestSelected, SelectedSet

    pool, s = CandidatePool(z.shape[1], kk), SelectedSet(z.shape[1])
    pool.add(z, NearestSelected(kk, "ckdtree").query(z, s.z), ids=ids, classes=groups_of,
             seen=np.zeros(len(z), np.int64), src=0, seg=0, row=np.arange(len(z)))
    return pool, s


@pytest.mark.parametrize("kk", [1, 3])
@pytest.mark.parametrize("random_picks", [0, 4])
def test_binned_and_random_picks_equal_the_reference(kk, random_picks):
    from mummi_ml.selector import LazyGreedy, reference_select
    from mummi_ml.selector.groups import SelectionGroups, mummi_queues

    g = SelectionGroups.from_queues(mummi_queues(), random_picks=random_picks, seed=5)
    z, ids, y, dist, _, _ = _scenario(3, 1)
    cls = g.classify(y, bin_value=dist)
    pool, s = _pool_of(z, ids, cls, kk)
    engine = LazyGreedy(pool, s, frontier_size=8, groups=g)
    picks = engine.select(70) + engine.select(50)
    ref, nov = reference_select(z, ids, 120, classes=cls, knn_k=kk, groups=g)
    assert [p.id for p in picks] == ids[ref].tolist()
    assert [p.novelty for p in picks] == nov.tolist()
    assert [p.cls for p in picks] == cls[ref].tolist()


def test_random_picks_come_first_in_each_queue_then_novelty():
    from mummi_ml.selector import LazyGreedy
    from mummi_ml.selector.groups import SelectionGroups, mummi_queues, random_keys

    g = SelectionGroups.from_queues(mummi_queues(dimer_bins=1), random_picks=2, seed=1)
    z, ids, y, dist, _, _ = _scenario(4, 1)
    cls = g.classify(y, bin_value=dist)
    pool, s = _pool_of(z, ids, cls)
    picks = LazyGreedy(pool, s, groups=g).select(40)
    keys = random_keys(ids, 1)
    for q in range(3):  # lipid-only, monomers, dimers: the first two have the smallest keys
        mine = [p for p in picks if g.queue[p.cls] == q]
        smallest = ids[np.lexsort((keys, g.queue[cls] != q))[:2]]
        assert [p.id for p in mine[:2]] == smallest.tolist()


def test_the_same_seed_gives_the_same_random_picks_and_another_seed_others():
    from mummi_ml.selector import reference_select
    from mummi_ml.selector.groups import SelectionGroups

    z, ids, y, _, _, _ = _scenario(5, 1)
    runs = [reference_select(z, ids, 10, groups=SelectionGroups.classes(
        random_picks=10, seed=s))[0].tolist() for s in (7, 7, 8)]
    assert runs[0] == runs[1] != runs[2]


# ---- over MPI ranks ----------------------------------------------------------------------

def _worker(out: str, seed: int, kk: int) -> None:
    from mpi4py import MPI

    from mummi_ml.selector import CandidatePool, LazyGreedy, NearestSelected, SelectedSet

    comm = MPI.COMM_WORLD
    rank, size = comm.Get_rank(), comm.Get_size()
    g = _groups()
    z, ids, y, dist, arrival, owner = _scenario(seed, size)
    cls = g.classify(y, bin_value=dist)
    pool, sel = CandidatePool(D, kk), SelectedSet(D)
    engine = LazyGreedy(pool, sel, comm, frontier_size=8, groups=g)
    nn = NearestSelected(kk, "ckdtree", brute_max=8)
    picks = []
    for r in range(ROUNDS):
        mine = np.flatnonzero((arrival == r) & (owner == rank))
        pool.add(z[mine], nn.query(z[mine], sel.z), ids=ids[mine], classes=cls[mine],
                 seen=np.full(len(mine), len(sel)), src=rank, seg=r, row=mine)
        picks += engine.select(PER_ROUND[r])
    if rank == 0:
        with open(out, "w") as fh:
            json.dump({"ids": [p.id for p in picks], "novelty": [p.novelty for p in picks]}, fh)


def _reference(seed: int, kk: int) -> tuple[list[int], list[float]]:
    from mummi_ml.selector import reference_select

    g = _groups()
    z, ids, y, dist, arrival, _ = _scenario(seed, 1)
    cls = g.classify(y, bin_value=dist)
    picked: list[int] = []
    nov: list[float] = []
    for r in range(ROUNDS):
        avail = np.flatnonzero((arrival <= r) & ~np.isin(np.arange(N), picked))
        pos, nv = reference_select(z[avail], ids[avail], PER_ROUND[r], classes=cls[avail],
                                   selected_z=z[picked] if picked else None,
                                   selected_classes=cls[picked] if picked else None,
                                   knn_k=kk, groups=g)
        picked += avail[pos].tolist()
        nov += nv.tolist()
    return ids[picked].tolist(), nov


@pytest.mark.mpi
@pytest.mark.parametrize(("ranks", "kk"), [(1, 1), (3, 1), (3, 3)])
def test_distributed_binned_and_random_picks_equal_the_reference(run_mpi, tmp_path, ranks, kk):
    out = tmp_path / "picks.json"
    run_mpi(ranks, [__file__, str(out), "21", str(kk)], timeout=180)
    got = json.loads(out.read_text())
    ids, nov = _reference(21, kk)
    assert got["ids"] == ids
    assert got["novelty"] == nov


if __name__ == "__main__":
    _worker(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))
