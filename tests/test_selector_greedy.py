"""Single-process selection: the lazy greedy equals the plain reference; helpers are exact."""

from __future__ import annotations

import numpy as np
import pytest

from mummi_ml.selector import (
    CandidatePool,
    IdSet,
    LazyGreedy,
    NearestSelected,
    SelectedSet,
    distances,
    distances_to_point,
    importance_weights,
    naive_rerank_select,
    nearest_distances,
    pair_distances,
    quota_classes,
    reference_select,
)
from mummi_ml.selector.bounds import BoundLevels, SetAside


def _pool(z, ids, cls, kk=1, selected=None):
    n = len(z)
    pool = CandidatePool(z.shape[1], kk)
    s = selected if selected is not None else SelectedSet(z.shape[1])
    dk = NearestSelected(kk, "ckdtree", brute_max=4).query(z, s.z)
    pool.add(z, dk, ids=ids, classes=cls, seen=np.full(n, len(s)), src=0, seg=0,
             row=np.arange(n))
    return pool, s


def _data(rng, n, d=5):
    z = rng.normal(size=(n, d)).astype(np.float32)
    ids = rng.permutation(10 * n + 10)[:n].astype(np.uint64)
    cls = rng.integers(0, 4, n).astype(np.int8)
    return z, ids, cls


@pytest.mark.parametrize("kk", [1, 4])
@pytest.mark.parametrize("quotas", [None, [0.4, 0.3, 0.2, 0.1]])
def test_lazy_greedy_picks_what_the_reference_picks(rng, kk, quotas):
    z, ids, cls = _data(rng, 3000)
    pool, s = _pool(z, ids, cls, kk)
    engine = LazyGreedy(pool, s, frontier_size=16, quotas=quotas)
    picks = engine.select(25) + engine.select(15)  # two rounds
    ref, nov = reference_select(z, ids, 40, classes=cls, knn_k=kk, quotas=quotas)
    assert [p.id for p in picks] == ids[ref].tolist()
    assert [p.novelty for p in picks] == nov.tolist()
    assert len(pool) == 3000 - 40
    assert not np.isin(pool.ids, ids[ref]).any()


@pytest.mark.parametrize("kk", [1, 3])
def test_a_cold_start_deep_into_the_pool_picks_what_the_reference_picks(rng, kk):
    # a tiny floor and many picks: the threshold is lowered many times and caught-up rows have
    # seen many different numbers of picks
    z, ids, cls = _data(rng, 6000, d=9)
    pool, s = _pool(z, ids, cls, kk)
    engine = LazyGreedy(pool, s, frontier_size=4)
    picks = engine.select(120)
    ref, nov = reference_select(z, ids, 120, classes=cls, knn_k=kk)
    assert [p.id for p in picks] == ids[ref].tolist()
    assert [p.novelty for p in picks] == nov.tolist()
    assert engine.stats["lowered"] > 10


def _random_embeddings(rng, n, d, mode):
    if mode == "grid":  # many exactly equal distances
        z = rng.integers(0, 4, size=(n, d)).astype(float)
    else:
        z = rng.normal(size=(n, d))
        if mode == "duplicates":
            z[rng.integers(0, n, n // 3)] = z[rng.integers(0, n, n // 3)]
    return (z * rng.choice([1e-3, 1.0, 1e3])).astype(np.float32)


@pytest.mark.parametrize("seed", range(24))
def test_lazy_greedy_matches_the_reference_on_random_pools_and_rounds(seed):
    # random sizes, dimensions, k nearest, quotas, floors, warm starts, ties and duplicates;
    # candidates arrive between rounds; every stored bound stays the kk smallest distances
    # among the picks a row has seen
    rng = np.random.default_rng(seed)
    n, d = int(rng.integers(20, 800)), int(rng.integers(1, 10))
    kk = int(rng.choice([1, 2, 3]))
    z = _random_embeddings(rng, n, d, rng.choice(["normal", "grid", "duplicates"]))
    ids = rng.permutation(10 * n)[:n].astype(np.uint64)
    cls = rng.integers(0, int(rng.integers(1, 5)), n).astype(np.int8)
    quotas = None if rng.random() < 0.5 else rng.random(4) + 0.01
    s = SelectedSet(d)
    if rng.random() < 0.4:
        s.append(z[rng.integers(0, n, 5)], ids=np.arange(5, dtype=np.uint64) + 10**9)
    pool = CandidatePool(d, kk)
    engine = LazyGreedy(pool, s, frontier_size=int(rng.choice([1, 4, 1024])), quotas=quotas)
    arrival = np.where(rng.random(n) < 0.6, 0, 1)
    waiting = np.zeros(n, bool)
    for r in range(2):
        new = np.flatnonzero(arrival == r)
        pool.add(z[new], NearestSelected(kk, "ckdtree").query(z[new], s.z), ids=ids[new],
                 classes=cls[new], seen=np.full(len(new), len(s)), src=0, seg=r, row=new)
        waiting[new] = True
        avail = np.flatnonzero(waiting)
        k = int(rng.choice([1, 7, 40, n]))
        ref, nov = reference_select(z[avail], ids[avail], k, classes=cls[avail],
                                    selected_z=s.z.copy() if len(s) else None,
                                    selected_classes=s.classes.copy(), knn_k=kk, quotas=quotas)
        picks = engine.select(k)
        assert [p.id for p in picks] == ids[avail[ref]].tolist()
        assert [p.novelty for p in picks] == nov.tolist()
        waiting[avail[ref]] = False
        assert sorted(pool.ids.tolist()) == sorted(ids[waiting].tolist())
        dist = distances(pool.z, s.z)
        for seen in np.unique(pool.seen):
            rows = np.flatnonzero(pool.seen == seen)
            want = np.full((len(rows), kk), np.inf)
            near = np.sort(dist[rows, :seen], axis=1)[:, :kk]
            want[:, : near.shape[1]] = near
            np.testing.assert_array_equal(pool.dk[rows], want)


def test_lazy_greedy_touches_a_small_part_of_a_warm_pool(rng):
    z, ids, cls = _data(rng, 20000)
    s = SelectedSet(5)
    prev = rng.normal(size=(30, 5)).astype(np.float32)
    s.append(prev, ids=np.arange(30, dtype=np.uint64) + 10**9)
    pool, _ = _pool(z, ids, cls, selected=s)
    engine = LazyGreedy(pool, s, frontier_size=64)
    engine.select(50)
    # the naive method computes 20000 distances per pick (1,000,000 for 50 picks)
    assert engine.stats["distances"] < 50_000


@pytest.mark.parametrize("kk", [1, 3])
def test_refresh_all_makes_every_novelty_exact_after_a_lazy_selection(rng, kk):
    z, ids, cls = _data(rng, 4000)
    pool, s = _pool(z, ids, cls, kk)
    engine = LazyGreedy(pool, s, frontier_size=8)
    engine.select(30)
    assert (pool.seen < len(s)).any()  # the lazy method left most bounds stale
    engine.refresh_all()
    want = np.sort(distances(pool.z, s.z), axis=1)[:, :kk]
    np.testing.assert_array_equal(pool.dk, want)
    assert (pool.seen == len(s)).all()


def test_ties_go_to_the_smallest_patch_id():
    z = np.zeros((6, 3), dtype=np.float32)  # identical points: every novelty ties
    ids = np.array([50, 7, 9, 3, 100, 8], dtype=np.uint64)
    pool, s = _pool(z, ids, np.zeros(6, np.int8))
    picks = LazyGreedy(pool, s, frontier_size=1).select(3)
    assert [p.id for p in picks] == [3, 7, 8]


def test_selection_stops_when_the_pool_runs_dry(rng):
    z, ids, cls = _data(rng, 5)
    pool, s = _pool(z, ids, cls)
    picks = LazyGreedy(pool, s).select(10)
    assert sorted(p.id for p in picks) == sorted(ids.tolist())
    assert LazyGreedy(pool, s).select(3) == []


def test_first_pick_of_an_empty_selected_set_has_infinite_novelty(rng):
    z, ids, cls = _data(rng, 50)
    pool, s = _pool(z, ids, cls)
    first = LazyGreedy(pool, s).select(1)[0]
    assert first.id == int(ids.min()) and first.novelty == np.inf


def test_novelty_of_picks_never_rises(rng):
    z, ids, cls = _data(rng, 2000)
    pool, s = _pool(z, ids, cls)
    nov = [p.novelty for p in LazyGreedy(pool, s, frontier_size=8).select(60)]
    assert all(a >= b for a, b in zip(nov, nov[1:], strict=False))


def test_naive_rerank_picks_what_the_reference_picks(rng):
    z, ids, cls = _data(rng, 800)
    ref, _ = reference_select(z, ids, 20)
    assert naive_rerank_select(z, ids, 20).tolist() == ref.tolist()


def test_quota_classes_follow_the_largest_deficit():
    q = np.array([0.5, 0.5, 0.0, 0.0])
    avail = np.array([5, 5, 5, 5])
    assert quota_classes(q, np.array([2, 1, 0, 0]), avail).tolist() == [False, True, False, False]
    assert quota_classes(q, np.array([1, 1, 0, 0]), avail).tolist() == [True, False, False, False]
    # a wanted class without candidates is skipped; nothing wanted left: any class
    assert quota_classes(q, np.zeros(4), np.array([0, 3, 1, 0]))[1]
    assert quota_classes(q, np.zeros(4), np.array([0, 0, 2, 0])).tolist() == [0, 0, 1, 0]
    assert quota_classes(q, np.zeros(4), np.zeros(4)) is None


def test_quotas_shape_the_class_mix_of_picks(rng):
    z, ids, cls = _data(rng, 2000)
    pool, s = _pool(z, ids, cls)
    picks = LazyGreedy(pool, s, quotas=[0.5, 0.5, 0, 0]).select(40)
    counts = np.bincount([p.cls for p in picks], minlength=4)
    assert counts.tolist() == [20, 20, 0, 0]


@pytest.mark.parametrize("backend", ["ckdtree", "faiss", "torch"])
def test_nearest_selected_backends_give_reference_distances(rng, backend):
    s = rng.normal(size=(3000, 9)).astype(np.float32)
    q = rng.normal(size=(500, 9)).astype(np.float32)
    nn = NearestSelected(3, backend, brute_max=100)
    got = nn.query(q, s[:2500])
    want = np.sort(distances(q, s[:2500]), axis=1)[:, :3]
    np.testing.assert_array_equal(got, want)
    got2 = nn.query(q, s)  # picks beyond the index are searched brute force
    np.testing.assert_array_equal(got2, np.sort(distances(q, s), axis=1)[:, :3])


def test_pair_distances_are_bit_identical_to_distances(rng):
    a = rng.normal(size=(40, 9)).astype(np.float32)
    b = rng.normal(size=(30, 9)).astype(np.float32)
    idx = rng.integers(0, 30, size=(40, 4))
    np.testing.assert_array_equal(pair_distances(a, b[idx]),
                                  np.take_along_axis(distances(a, b), idx, axis=1))


@pytest.mark.parametrize("d", [1, 3, 9, 16])
@pytest.mark.parametrize("scale", [1e-3, 1.0, 1e3])
def test_fast_distance_kernels_are_bit_identical_to_distances(rng, d, scale):
    a = (rng.normal(size=(20000, d)) * scale).astype(np.float32)  # > one chunk of rows
    b = (rng.normal(size=(37, d)) * scale).astype(np.float32)
    full = distances(a, b)
    np.testing.assert_array_equal(distances_to_point(a, b[5]), full[:, 5])
    for n in (0, 1, 300):
        np.testing.assert_array_equal(distances_to_point(a[:n], b[5]), full[:n, 5])
    np.testing.assert_array_equal(nearest_distances(a, b), full.min(axis=1))
    np.testing.assert_array_equal(nearest_distances(a, b[:0]), np.full(len(a), np.inf))


def test_bound_levels_take_everything_above_a_threshold_and_only_whole_levels(rng):
    n = 5000
    bounds = rng.exponential(size=n) * 3
    bounds[:3] = [np.inf, 0.0, bounds.max()]
    cls = rng.integers(0, 4, n).astype(np.int8)
    alive = rng.random(n) > 0.1
    lv = BoundLevels(bounds, cls, alive)
    taken = np.zeros(n, bool)
    for t in [5.0, 2.0, 1.99, 0.5, -np.inf]:
        for c in range(4):
            got = lv.take(c, t)
            assert not taken[got].any() and (cls[got] == c).all() and alive[got].all()
            taken[got] = True
            rest = alive & ~taken & (cls == c)
            assert (bounds[rest] <= t).all()
            assert lv.threshold(c) == (bounds[rest].max() if rest.any() else -np.inf)
    assert (taken == alive).all()


def test_bound_levels_take_at_least_the_asked_count(rng):
    bounds = rng.random(3000)
    lv = BoundLevels(bounds, np.zeros(3000, np.int8), np.ones(3000, bool))
    got = lv.take(0, np.inf, at_least=100)
    assert 100 <= len(got) < 200
    assert bounds[got].min() >= np.sort(bounds)[::-1][len(got) + 20]  # the top ones, by level


def test_set_aside_hands_back_exactly_those_above_their_class_threshold(rng):
    aside = SetAside(top=10.0)
    held, next_id = {}, 0
    for _ in range(30):  # many pushes (sorted merges, unsorted chunks) and takes
        k = int(rng.integers(1, 400))
        idx = np.arange(next_id, next_id + k)
        next_id += k
        b, c = rng.random(k) * 10, rng.integers(0, 4, k).astype(np.int8)
        aside.push(idx, b, c)
        held.update({int(i): (float(x), int(y)) for i, x, y in zip(idx, b, c, strict=True)})
        thr = rng.random(4) * 10
        got = set(aside.take(thr).tolist())
        want = {i for i, (x, y) in held.items() if x > thr[y]}
        assert got == want
        for i in want:
            del held[i]
        assert len(aside) == len(held)
        for c in range(4):
            assert all(x <= aside.upper_bound(c) for x, y in held.values() if y == c)
    assert set(aside.take(np.full(4, -np.inf)).tolist()) == set(held)


def test_importance_weights_count_nearest_unselected_plus_one():
    sel = np.array([[0.0, 0.0], [10.0, 0.0]], dtype=np.float32)
    pool = np.array([[1, 0], [2, 0], [9, 0], [-3, 0]], dtype=np.float32)
    assert importance_weights(pool, sel).tolist() == [4, 2]


def test_idset_membership_after_many_insertions(rng):
    s = IdSet()
    all_ids = rng.permutation(100000).astype(np.uint64)
    for chunk in np.array_split(all_ids[:60000], 37):
        s.add(chunk)
    assert s.contains(all_ids[:60000]).all()
    assert not s.contains(all_ids[60000:]).any()
    assert len(s) == 60000
