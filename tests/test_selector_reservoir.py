"""The retraining reservoir: exact on any rank count and arrival order, class-balanced, bounded,
checkpointable, and written as ordinary patch files."""

from __future__ import annotations

import numpy as np
import pytest

from mummi_ml.patch import PatchBatch, PatchFile
from mummi_ml.selector.errors import SelectorError
from mummi_ml.selector.payloads import PayloadStore
from mummi_ml.selector.reservoir import (
    Reservoir,
    fetch_from_store,
    hash_priority,
    read_manifest,
    write_snapshot,
)

N_CLASSES, K = 4, 25


def _stream(n: int = 2000, seed: int = 0):
    rng = np.random.default_rng(seed)
    ids = rng.choice(10**12, size=n, replace=False).astype(np.uint64)
    classes = rng.choice(4, size=n, p=[0.7, 0.2, 0.07, 0.03])
    loc = np.stack([np.zeros(n), np.arange(n) // 100, np.arange(n) % 100], 1).astype(np.int64)
    return ids, classes, loc


def _fed(ids, classes, loc, chunks: int = 7) -> Reservoir:
    r = Reservoir(N_CLASSES, K)
    for part in np.array_split(np.arange(len(ids)), chunks):
        r.offer(ids[part], classes[part], loc[part])
    return r


def test_three_ranks_in_any_order_hold_exactly_the_one_rank_sample():
    ids, classes, loc = _stream()
    one = _fed(ids, classes, loc)
    rng = np.random.default_rng(5)
    perm = rng.permutation(len(ids))
    ranks = [perm[r::3] for r in range(3)]  # round-robin partition of a shuffled stream
    parts = [_fed(ids[p], classes[p], loc[p], chunks=3) for p in ranks]
    merged = Reservoir.merge(parts[::-1])
    np.testing.assert_array_equal(merged.ids, one.ids)
    np.testing.assert_array_equal(merged.loc, one.loc)
    np.testing.assert_array_equal(merged.seen, one.seen)


def test_each_class_gets_its_quota_or_everything_it_has():
    ids, classes, loc = _stream()
    r = _fed(ids, classes, loc)
    have = np.bincount(classes, minlength=N_CLASSES)
    np.testing.assert_array_equal(r.counts(), np.minimum(have, K))


def test_sample_is_the_smallest_priorities_of_each_class():
    ids, classes, loc = _stream()
    r = _fed(ids, classes, loc)
    prio = hash_priority(ids)
    for c in range(N_CLASSES):
        expect = ids[classes == c][np.argsort(prio[classes == c], kind="stable")[:K]]
        assert set(r.ids[r.classes == c]) == set(expect)


def test_memory_stays_bounded_on_a_long_stream():
    r = Reservoir(N_CLASSES, K)
    for seed in range(10):
        ids, classes, loc = _stream(3000, seed)
        r.offer(ids + np.uint64(seed * 10**12), classes, loc)
    assert len(r) <= N_CLASSES * K and r.seen.sum() == 30000


def test_an_id_offered_twice_is_kept_once():
    ids, classes, loc = _stream(50)
    r = Reservoir(N_CLASSES, K)
    r.offer(ids, classes, loc)
    r.offer(ids, classes, loc)
    assert len(np.unique(r.ids)) == len(r)


def test_state_round_trips_through_a_checkpoint(tmp_path):
    ids, classes, loc = _stream()
    r = _fed(ids, classes, loc)
    np.savez(tmp_path / "r.npz", **r.to_state())
    back = Reservoir.from_state(dict(np.load(tmp_path / "r.npz")))
    np.testing.assert_array_equal(back.ids, r.ids)
    np.testing.assert_array_equal(back.loc, r.loc)
    np.testing.assert_array_equal(back.seen, r.seen)


def test_class_outside_the_range_is_refused():
    with pytest.raises(SelectorError, match="classes outside"):
        Reservoir(2, 3).offer(np.array([1, 2]), np.array([0, 2]), np.zeros((2, 3)))


def _patches(ids: np.ndarray, seed: int) -> PatchBatch:
    rng = np.random.default_rng(seed)
    n = len(ids)
    y = np.stack([np.arange(n) % 3, np.zeros(n)], 1)
    x = rng.uniform(0, 1, (n, 37, 37, 14)).astype(np.float32)
    return PatchBatch.from_arrays(x, y, ids=ids)


def test_snapshot_writes_reservoir_and_selected_as_patch_files(tmp_path):
    store = PayloadStore(tmp_path / "payloads", rank=0)
    batch = _patches(np.arange(100, 160, dtype=np.uint64), 1)
    src, seg, rows = store.put(batch)
    r = Reservoir(4, 8)
    r.offer(batch.ids, batch.classes, np.stack([np.full(60, src), np.full(60, seg), rows], 1))
    selected = batch.subset(np.isin(batch.ids, r.ids[:2]))  # two picks also in the sample
    snap = write_snapshot(tmp_path / "snap", r, fetch_from_store(store), selected,
                          attrs={"model_version": "abc"})
    with PatchFile(snap.files[0]) as f:
        res = f.read()
    with PatchFile(snap.files[1]) as f:
        sel = f.read()
    n_sample = int(np.minimum(np.bincount(batch.classes, minlength=4), 8).sum())
    assert len(res) == n_sample - 2 and len(sel) == 2 and not set(res.ids) & set(sel.ids)
    i = np.searchsorted(batch.ids, res.ids)
    np.testing.assert_array_equal(res.x, batch.x[i])
    assert read_manifest(tmp_path / "snap")["n_reservoir"] == n_sample - 2
