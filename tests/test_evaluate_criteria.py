"""The three evaluation criteria against brute-force references (DESIGN.md definitions)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mummi_ml.evaluate import (
    EvaluationError,
    mare,
    overlap,
    overlap_percent,
    pr_auc,
    pr_curve,
)
from mummi_ml.evaluate.selection import exact_kth_values, exact_median

# ---------------------------------------------------------------- brute-force references


def _dist(a: np.ndarray) -> np.ndarray:
    return np.linalg.norm(a[:, None, :] - a[None, :, :], axis=-1)


def _upper(d: np.ndarray) -> np.ndarray:
    return d[np.triu_indices(len(d), k=1)]


def ref_overlap(z, zt):
    tau = np.linalg.norm(z[:, None, :] - zt, axis=-1).max()
    du = _upper(_dist(z))
    return 100.0 * np.mean(du <= tau), tau


def ref_mare(z, u, lam=None):
    dz, du = _upper(_dist(z)), _upper(_dist(u))
    if lam is None:
        lam = np.sum(dz * du) / np.sum(du * du)
    m = np.median(np.abs(dz - lam * du))
    return m, m / lam, lam


def ref_pr(z, classes):
    """Per-query loop; a neighbour j tied with eq-1 others, with `less` strictly closer
    neighbours, is at rank <= k with probability clip((k - less) / eq, 0, 1)."""
    n = len(z)
    d = _dist(z)
    ks = np.arange(1, n)
    precs, recs, accs = [], [], []
    for i in range(n):
        others = np.delete(np.arange(n), i)
        di = d[i, others]
        pos = classes[others] == classes[i]
        if pos.sum() == 0:
            continue
        less = (di[None, :] < di[:, None]).sum(1)
        eq = (di[None, :] == di[:, None]).sum(1)
        p_in = np.clip((ks[:, None] - less[None, :]) / eq[None, :], 0, 1)  # [k, j]
        tp = p_in[:, pos].sum(1)
        precs.append(tp / ks)
        recs.append(tp / pos.sum())
        n_neg = (~pos).sum()
        accs.append((tp + (n_neg - (ks - tp))) / (n - 1))
    p, r, a = (np.mean(x, axis=0) for x in (precs, recs, accs))
    auc = np.sum(p * np.diff(r, prepend=0.0))
    return auc, p, r, a


# ---------------------------------------------------------------- overlap


def test_overlap_matches_brute_force(rng):
    z = rng.normal(size=(60, 4))
    zt = z[:, None, :] + 0.4 * rng.normal(size=(60, 5, 4))
    want, tau = ref_overlap(z, zt)
    got = overlap(z, zt, block_rows=7)
    assert want > 0
    assert got.percent == pytest.approx(want, rel=1e-12)
    assert got.tau == pytest.approx(tau, rel=1e-12)
    assert got.n_pairs == 60 * 59 // 2


def test_overlap_counts_pairs_at_exactly_tau(rng):
    z = rng.integers(0, 4, size=(40, 2)).astype(np.float64)
    zt = np.repeat(z[:, None, :], 5, axis=1)
    zt[0, 2] += [1.0, 0.0]  # tau = 1 exactly; many integer pairs are at distance exactly 1
    want, _ = ref_overlap(z, zt)
    assert overlap_percent(z, zt, block_rows=3) == pytest.approx(want, rel=1e-12)


def test_overlap_of_identical_points_is_100_percent():
    z = np.ones((10, 3))
    assert overlap_percent(z, np.ones((10, 5, 3))) == 100.0


def test_overlap_of_invariant_distinct_points_is_zero(rng):
    z = rng.normal(size=(30, 3))
    assert overlap_percent(z, np.repeat(z[:, None], 5, axis=1)) == 0.0


def test_overlap_rejects_mismatched_transformations(rng):
    with pytest.raises(EvaluationError, match="z_transformed"):
        overlap_percent(rng.normal(size=(10, 3)), rng.normal(size=(9, 5, 3)))


def test_overlap_rejects_non_finite_points():
    z = np.zeros((4, 2))
    z[1, 1] = np.nan
    with pytest.raises(EvaluationError, match="finite"):
        overlap_percent(z, np.zeros((4, 5, 2)))


# ---------------------------------------------------------------- MARE


@pytest.mark.parametrize("n", [49, 50])  # 1176 pairs (even) and 1225 pairs (odd)
def test_mare_with_fitted_lambda_matches_brute_force(rng, n):
    z = rng.normal(size=(n, 3))
    u = rng.normal(size=(n, 20))
    m, ms, lam = ref_mare(z, u)
    got = mare(z, u, block_rows=6)
    assert got.lam_fitted
    assert got.lam == pytest.approx(lam, rel=1e-10)
    assert got.mare == pytest.approx(m, rel=1e-10)
    assert got.mare_star == pytest.approx(ms, rel=1e-10)


def test_mare_of_an_even_number_of_pairs_averages_the_middle_two(rng):
    z = rng.normal(size=(4, 2))  # 6 pairs
    u = rng.normal(size=(4, 3))
    m, _, _ = ref_mare(z, u, lam=0.5)
    assert mare(z, u, lam=0.5).mare == pytest.approx(m, rel=1e-12)


def test_mare_with_given_lambda_matches_brute_force(rng):
    z = rng.normal(size=(70, 9))
    u = rng.normal(size=(70, 304))  # the matrix-product branch for large dimensions
    m, ms, _ = ref_mare(z, u, lam=0.1)
    got = mare(z, u, lam=0.1)
    assert not got.lam_fitted and got.lam == 0.1
    assert got.mare == pytest.approx(m, rel=1e-9)
    assert got.mare_star == pytest.approx(ms, rel=1e-9)


def test_mare_is_zero_when_distances_are_exactly_proportional(rng):
    u = rng.normal(size=(40, 5))
    assert mare(0.25 * u, u).mare == pytest.approx(0.0, abs=1e-12)
    assert mare(0.25 * u, u).lam == pytest.approx(0.25, rel=1e-12)


def test_mare_of_identical_points_with_given_lambda_is_zero():
    got = mare(np.zeros((8, 3)), np.ones((8, 6)), lam=0.1)
    assert got.mare == 0.0 and got.mare_star == 0.0


def test_mare_cannot_fit_lambda_when_profiles_are_identical(rng):
    with pytest.raises(EvaluationError, match="lambda"):
        mare(rng.normal(size=(8, 3)), np.ones((8, 6)))


def test_mare_rejects_mismatched_rows(rng):
    with pytest.raises(EvaluationError, match="upsilon"):
        mare(rng.normal(size=(8, 3)), rng.normal(size=(7, 6)))


def test_exact_selection_with_refinement_passes_matches_sorting(rng):
    vals = np.concatenate([rng.normal(size=5000) ** 2, np.full(300, 0.7), rng.uniform(size=50)])
    blocks = [torch.from_numpy(b) for b in np.array_split(vals, 13)]
    ranks = [0, 1, 2499, 2500, 2999, len(vals) - 1]
    got = exact_kth_values(lambda: iter(blocks), len(vals), ranks, 0.0, 0.5, n_bins=4, cap=10)
    assert got == list(np.sort(vals)[ranks])
    assert exact_median(lambda: iter(blocks), len(vals), 0.0, 0.5, n_bins=8, cap=3) == np.median(
        vals
    )


def test_exact_selection_of_constant_values():
    blocks = [torch.full((100,), 2.5)] * 3
    assert exact_median(lambda: iter(blocks), 300, 0.0, 10.0, n_bins=16, cap=5) == 2.5


# ---------------------------------------------------------------- PR AUC


def test_pr_curve_matches_brute_force(rng):
    z = rng.normal(size=(45, 3))
    classes = rng.integers(0, 4, size=45)
    auc, p, r, a = ref_pr(z, classes)
    got = pr_curve(z, classes, block_rows=8)
    assert got.auc == pytest.approx(auc, rel=1e-12)
    np.testing.assert_allclose(got.precision, p, rtol=1e-12)
    np.testing.assert_allclose(got.recall, r, rtol=1e-12)
    np.testing.assert_allclose(got.accuracy, a, rtol=1e-12)


def test_pr_auc_with_tied_distances_matches_brute_force(rng):
    z = rng.integers(0, 3, size=(50, 2)).astype(np.float64)  # many equal distances
    classes = rng.integers(0, 3, size=50)
    auc, p, _, _ = ref_pr(z, classes)
    got = pr_curve(z, classes, block_rows=5)
    assert got.auc == pytest.approx(auc, rel=1e-12)
    np.testing.assert_allclose(got.precision, p, rtol=1e-12)


def test_pr_auc_does_not_depend_on_point_order_with_ties(rng):
    z = rng.integers(0, 3, size=(40, 2)).astype(np.float64)
    classes = rng.integers(0, 2, size=40)
    perm = rng.permutation(40)
    assert pr_auc(z, classes) == pytest.approx(pr_auc(z[perm], classes[perm]), rel=1e-12)


def test_pr_auc_of_identical_points_is_the_expected_chance_value():
    z = np.zeros((12, 4))
    classes = np.array([0] * 4 + [1] * 8)
    auc, _, _, _ = ref_pr(z, classes)
    assert pr_auc(z, classes) == pytest.approx(auc, rel=1e-12)


def test_pr_auc_of_one_class_is_one(rng):
    got = pr_curve(rng.normal(size=(20, 3)), np.zeros(20, dtype=int))
    assert got.auc == pytest.approx(1.0)
    np.testing.assert_allclose(got.precision, 1.0)


def test_pr_auc_of_separated_clusters_is_one(rng):
    classes = np.repeat([0, 1, 2], 10)
    z = rng.normal(size=(30, 2)) * 0.1 + 100.0 * classes[:, None]
    assert pr_auc(z, classes) == pytest.approx(1.0)


def test_pr_auc_leaves_out_queries_of_singleton_classes(rng):
    z = rng.normal(size=(25, 3))
    classes = np.array([0] * 12 + [1] * 12 + [2])
    auc, _, _, _ = ref_pr(z, classes)
    got = pr_curve(z, classes)
    assert got.n_queries == 24
    assert got.auc == pytest.approx(auc, rel=1e-12)


def test_pr_auc_does_not_depend_on_block_size(rng):
    z = rng.normal(size=(33, 5)).astype(np.float32)
    classes = rng.integers(0, 4, size=33)
    assert pr_auc(z, classes, block_rows=1) == pytest.approx(pr_auc(z, classes), rel=1e-12)


def test_pr_auc_rejects_mismatched_classes(rng):
    with pytest.raises(EvaluationError, match="classes"):
        pr_auc(rng.normal(size=(10, 3)), np.zeros(9))


@pytest.mark.parametrize("lam", [None, 0.2])
def test_mare_without_pair_cache_equals_cached(rng, lam):
    z = rng.normal(size=(41, 3))
    u = rng.normal(size=(41, 7))
    cached = mare(z, u, lam=lam, block_rows=5)
    streamed = mare(z, u, lam=lam, block_rows=5, cache_bytes=0)
    assert streamed.mare == pytest.approx(cached.mare, rel=1e-12)
    assert streamed.lam == pytest.approx(cached.lam, rel=1e-12)
