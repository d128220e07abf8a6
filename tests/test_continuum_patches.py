"""Patches from the continuum model: windows, labels, ids, controls, histories, relax_patch."""

from __future__ import annotations

import numpy as np
import pytest

from mummi_ml.continuum import (
    ContinuumConfig,
    ContinuumError,
    PatchSimulation,
    relax_patch,
    simulate_histories,
    simulate_patches,
)
from mummi_ml.continuum.patches import (
    control_centres,
    count_proteins,
    extract_windows,
    patch_id,
)
from mummi_ml.patch import CHANNEL_NAMES, PATCH_SHAPE, PIXEL_SIZE_NM, validate_batch

PAPS = CHANNEL_NAMES.index("inner_PAPS")


def _small_config(**kw) -> ContinuumConfig:
    base = dict(domain_pixels=64, n_ras=6, equilibration_us=0.2, control_patches_per_frame=2)
    base.update(kw)
    return ContinuumConfig(**base)


def test_extract_windows_wraps_around_the_periodic_domain(rng):
    fields = rng.random((50, 50, 3)).astype(np.float32)
    centres = np.array([[0, 0], [49, 10], [25, 25], [3, 48]])
    got = extract_windows(fields, centres)
    for k, (r, c) in enumerate(centres):  # brute force: roll the centre to (18, 18)
        ref = np.roll(fields, (18 - r, 18 - c), axis=(0, 1))[:37, :37]
        np.testing.assert_array_equal(got[k], ref)


def test_count_proteins_matches_a_brute_force_loop(rng):
    length = 60.0
    pos = rng.uniform(0, length, (40, 2))
    bound = rng.random(40) < 0.5
    centres = rng.uniform(0, length, (25, 2))
    got = count_proteins(centres, pos, bound, length)
    for i, cen in enumerate(centres):
        n_ras = n_raf = 0
        for p, b in zip(pos, bound, strict=True):
            d = (p - cen + length / 2) % length - length / 2
            if abs(d[0]) < 15 and abs(d[1]) < 15:
                n_ras += 1
                n_raf += int(b)
        assert tuple(got[i]) == (n_ras, n_raf)


def test_patch_ids_put_the_replica_in_the_high_bits():
    ids = patch_id(3, np.array([0, 5]))
    assert ids.dtype == np.uint64
    assert (ids >> np.uint64(40)).tolist() == [3, 3]
    assert (ids & np.uint64(2**40 - 1)).tolist() == [0, 5]


def test_control_centres_hold_no_protein(rng):
    pos = rng.uniform(0, 64 * PIXEL_SIZE_NM, (5, 2))
    centres = control_centres(10, pos, 64, PIXEL_SIZE_NM, rng)
    labels = count_proteins(centres[:, ::-1] * PIXEL_SIZE_NM, pos, np.zeros(5, bool), 64 * 0.8108)
    assert len(centres) > 0
    assert np.all(labels == 0)


def test_frame_has_a_patch_per_ras_plus_controls_with_consistent_metadata():
    sim = PatchSimulation(_small_config(), replica=2)
    batch = next(sim.frames())
    validate_batch(batch.x, batch.y)
    ras = batch.protein_id >= 0
    assert ras.sum() == 6
    assert np.all(batch.y[ras, 0] >= 1)  # the centre protein counts itself
    assert np.all(batch.y[~ras] == 0)
    assert np.all(batch.replica == 2)
    assert np.all((batch.ids >> np.uint64(40)) == 2)
    assert len(np.unique(batch.ids)) == len(batch)
    assert np.all(batch.x > 0)
    assert np.all(batch.time_us == pytest.approx(sim.time_us))
    assert batch.x.shape[1:] == PATCH_SHAPE


def test_ras_patches_show_the_lipid_response_at_their_centre():
    sim = PatchSimulation(_small_config(n_ras=8))
    batch = next(sim.frames())
    ras = batch.protein_id >= 0
    centre = batch.x[ras, 18, 18, PAPS].mean()
    rim = batch.x[ras][:, [0, 0, 36, 36], [0, 36, 0, 36], PAPS].mean()
    assert centre > 1.3 * rim


def test_simulate_patches_stops_at_the_requested_count_and_ids_are_unique():
    batches = list(simulate_patches(_small_config(), 21))
    total = sum(len(b) for b in batches)
    ids = np.concatenate([b.ids for b in batches])
    times = np.concatenate([b.time_us for b in batches])
    assert total == 21
    assert len(np.unique(ids)) == 21
    assert np.all(np.diff(times) >= 0)


def test_simulation_is_deterministic_for_a_seed_and_replicas_differ():
    a = next(PatchSimulation(_small_config(), replica=0).frames())
    b = next(PatchSimulation(_small_config(), replica=0).frames())
    c = next(PatchSimulation(_small_config(), replica=1).frames())
    np.testing.assert_array_equal(a.x, b.x)
    assert not np.allclose(a.x[:6], c.x[:6])


def test_histories_are_dense_in_time_and_one_per_protein():
    cfg = _small_config(n_ras=3)
    cfg.histories.interval_us = 0.01
    cfg.histories.duration_us = 0.05
    hist = simulate_histories(cfg, 5)  # needs two runs of 3 proteins
    ids, counts = np.unique(hist.protein_id, return_counts=True)
    assert len(ids) == 5
    assert np.all(counts == 6)
    one = hist.subset(hist.protein_id == ids[0])
    np.testing.assert_allclose(np.diff(one.time_us), 0.01, atol=1e-9)
    assert len(np.unique(hist.ids)) == len(hist)
    assert np.all(hist.y[:, 0] >= 1)


def _one_ras_patch() -> tuple[np.ndarray, np.ndarray]:
    batch = next(PatchSimulation(_small_config(n_ras=1, control_patches_per_frame=0)).frames())
    return batch.x[0], batch.y[0]


def test_relax_patch_conserves_totals_and_keeps_the_protein_signature():
    x, y = _one_ras_patch()
    out = relax_patch(x, y, 1.0, seed=3)
    assert out.shape == PATCH_SHAPE and out.dtype == np.float32
    np.testing.assert_allclose(
        out.sum(axis=(0, 1), dtype=np.float64), x.sum(axis=(0, 1), dtype=np.float64), rtol=1e-6
    )
    assert out[18, 18, PAPS] > 1.3 * out[0, 0, PAPS]  # protein held at the centre
    assert not np.allclose(out, x)


def test_relax_patch_is_deterministic_for_a_seed():
    x, y = _one_ras_patch()
    np.testing.assert_array_equal(relax_patch(x, y, 0.2, seed=1), relax_patch(x, y, 0.2, seed=1))
    assert not np.array_equal(relax_patch(x, y, 0.2, seed=1), relax_patch(x, y, 0.2, seed=2))


def test_relax_patch_without_protein_loses_the_enrichment():
    x, _ = _one_ras_patch()
    out = relax_patch(x, (0, 0), 2.0, seed=0)
    assert out[18, 18, PAPS] < 0.5 * (out[18, 18, PAPS] + x[18, 18, PAPS])


@pytest.mark.parametrize(
    "x, y, duration",
    [
        (np.ones((37, 37, 13)), (1, 0), 1.0),
        (np.full(PATCH_SHAPE, np.nan), (1, 0), 1.0),
        (np.ones(PATCH_SHAPE), (1, 2), 1.0),
        (np.ones(PATCH_SHAPE), (1, 0), -1.0),
    ],
    ids=["shape", "nan", "labels", "duration"],
)
def test_relax_patch_rejects_bad_input(x, y, duration):
    with pytest.raises(ContinuumError):
        relax_patch(x, y, duration)
