"""The drift monitor: quiet in distribution, one event with the figures when the stream leaves
it, exact merge across ranks, checkpoint state, drift.jsonl, and the live invariance probe."""

from __future__ import annotations

import functools

import numpy as np
import pytest

from mummi_ml.metric.domain import summarise_embeddings
from mummi_ml.selector.drift import (
    DriftConfig,
    DriftMonitor,
    WindowStats,
    append_drift_log,
    read_drift_log,
)

D = 4
TRAIN_SHARES = [0.7, 0.2, 0.07, 0.03]


@functools.cache
def _training_domain(tau: float | None = 1.0):
    rng = np.random.default_rng(0)
    z = rng.normal(size=(4000, D))
    classes = rng.choice(4, 4000, p=TRAIN_SHARES)
    return summarise_embeddings(z, "v1", classes, tau, "paper")


def _arrivals(n: int, seed: int, shift: float = 0.0, shares=TRAIN_SHARES):
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, D)) + shift
    classes = rng.choice(4, n, p=shares)
    ids = rng.choice(10**12, n, replace=False).astype(np.uint64)
    x = rng.uniform(0, 1, (n, 37, 37, 14)).astype(np.float32) if n <= 300 else None
    return z, classes, ids, x


def _embed(x: np.ndarray) -> np.ndarray:
    """A deterministic, NOT rotation-invariant map of raw patches to R^4."""
    return np.stack([x[:, :3, :3, 0].mean((1, 2)), x[:, -3:, :3, 1].mean((1, 2)),
                     x[:, :, :, 2].mean((1, 2)), x[:, 0, :, 3].mean(1)], 1)


def _monitor(**cfg) -> DriftMonitor:
    return DriftMonitor(_training_domain(), DriftConfig(window=1000, **cfg), "v1", 4, _embed)


def test_in_distribution_window_is_quiet():
    mon = _monitor(probe_size=0)
    z, c, ids, _ = _arrivals(1000, 1)
    mon.update(z, c, ids)
    rec = mon.close(mon.partial())
    assert 0.02 < rec.far_fraction < 0.1
    assert 0.9 < rec.median_ratio < 1.12
    assert rec.class_shift < 0.05 and not rec.event and rec.exceeded == []


def test_shifted_stream_emits_one_event_with_its_figures():
    mon = _monitor(probe_size=0)
    records = []
    for seed in range(3):
        z, c, ids, _ = _arrivals(1000, 10 + seed, shift=3.0, shares=[0.1, 0.2, 0.3, 0.4])
        mon.update(z, c, ids)
        records.append(mon.close(mon.partial()))
    assert [r.event for r in records] == [True, False, False]
    first = records[0]
    assert {"far_fraction", "median_ratio", "class_shift"} <= set(first.exceeded)
    assert first.far_fraction > 0.9 and first.median_ratio > 3
    assert "DRIFT EVENT" in first.summary() and "far" in first.summary()


def test_patience_delays_the_event():
    mon = _monitor(probe_size=0, patience=2)
    events = []
    for seed in range(2):
        z, c, ids, _ = _arrivals(1000, 20 + seed, shift=3.0)
        mon.update(z, c, ids)
        events.append(mon.close(mon.partial()).event)
    assert events == [False, True]


def _partial_of(parts_idx, z, c, ids, x, probe=8) -> list[WindowStats]:
    out = []
    for idx in parts_idx:
        mon = _monitor(probe_size=probe)
        for chunk in np.array_split(idx, 3):
            mon.update(z[chunk], c[chunk], ids[chunk], x[chunk])
        out.append(mon.partial())
    return out


def test_three_ranks_merge_to_exactly_the_one_rank_statistics():
    z, c, ids, x = _arrivals(300, 2, shift=0.5)
    one = _partial_of([np.arange(300)], z, c, ids, x)[0]
    perm = np.random.default_rng(3).permutation(300)
    three = WindowStats.merge(_partial_of([perm[r::3] for r in range(3)], z, c, ids, x)[::-1], 8)
    assert (one.n, one.far) == (three.n, three.far)
    for name in ("hist", "class_counts", "probe_prio", "probe_ids", "probe_value"):
        np.testing.assert_array_equal(getattr(one, name), getattr(three, name), err_msg=name)


def test_probe_reports_non_invariance_against_tau():
    mon = _monitor(probe_size=8)
    z, c, ids, x = _arrivals(200, 4)
    mon.update(z, c, ids, x)
    rec = mon.close(mon.partial())
    assert rec.probe_n == 8 and rec.invariance_ratio > 0


def test_state_round_trips_and_keeps_the_event_fired(tmp_path):
    mon = _monitor(probe_size=4)
    z, c, ids, x = _arrivals(300, 5, shift=3.0)
    mon.update(z[:150], c[:150], ids[:150], x[:150])
    mon.close(mon.partial())  # one closed window: the counters advance
    mon.update(z[150:], c[150:], ids[150:], x[150:])
    np.savez(tmp_path / "d.npz", **mon.to_state())
    back = _monitor(probe_size=4)
    back.restore(dict(np.load(tmp_path / "d.npz")))
    a, b = mon.close(mon.partial(), now=1.0), back.close(back.partial(), now=1.0)
    assert a == b


def test_drift_log_is_one_record_per_window(tmp_path):
    mon = _monitor(probe_size=0)
    for seed in range(2):
        z, c, ids, _ = _arrivals(1000, 30 + seed)
        mon.update(z, c, ids)
        append_drift_log(tmp_path, mon.close(mon.partial(), now=float(seed)))
    with open(tmp_path / "drift.jsonl", "a") as fh:
        fh.write('{"window": 2, "torn')
    recs = read_drift_log(tmp_path / "drift.jsonl")
    assert [r.window for r in recs] == [0, 1] and recs[1].time == 1.0


def test_a_domain_without_the_drift_reference_is_refused():
    from mummi_ml.selector.errors import SelectorError

    small = summarise_embeddings(np.zeros((2, D)), "v0")
    with pytest.raises(SelectorError, match="no drift reference"):
        DriftMonitor(small, DriftConfig(), "v0")
