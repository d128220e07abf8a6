"""The three losses against brute-force loops, their zero cases and their gradients."""

from __future__ import annotations

import itertools

import pytest
import torch

from mummi_ml.metric import LossConfig, invariance_loss, label_loss, metric_loss, radial_loss


def _d(a, b):
    return float(torch.linalg.vector_norm(a - b))


@pytest.fixture
def gen():
    return torch.Generator().manual_seed(7)


def test_invariance_loss_equals_the_batch_hard_loop(gen):
    z = torch.randn(5, 6, 3, generator=gen, dtype=torch.float64)
    alpha = 1.3
    total = 0.0
    for i in range(5):
        d_pos = max(_d(z[i, 0], z[i, t]) for t in range(1, 6))
        d_neg = min(_d(z[i, 0], z[j, v]) for j in range(5) if j != i for v in range(6))
        total += max(0.0, alpha + d_pos - d_neg)
    assert float(invariance_loss(z, alpha)) == pytest.approx(total / 5, rel=1e-9)


def test_invariance_loss_is_zero_when_transformations_are_tight_and_patches_apart():
    centres = torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]], dtype=torch.float64)
    z = centres[:, None, :] + 0.01 * torch.randn(3, 6, 2, dtype=torch.float64)
    assert float(invariance_loss(z, alpha=1.0)) == 0.0


@pytest.mark.parametrize("mining", ["batch_hard", "batch_all"])
def test_label_loss_equals_the_triplet_loop(gen, mining):
    z = torch.randn(9, 4, generator=gen, dtype=torch.float64)
    y = torch.tensor([0, 0, 1, 1, 1, 2, 3, 3, 0])
    alpha = 2.5
    d = [[_d(z[a], z[b]) for b in range(9)] for a in range(9)]
    if mining == "batch_hard":
        vals = []
        for a in range(9):
            pos = [d[a][p] for p in range(9) if p != a and y[p] == y[a]]
            neg = [d[a][n] for n in range(9) if y[n] != y[a]]
            if pos and neg:
                vals.append(max(0.0, alpha + max(pos) - min(neg)))
    else:
        vals = [
            max(0.0, alpha + d[a][p] - d[a][n])
            for a, p, n in itertools.product(range(9), repeat=3)
            if a != p and y[a] == y[p] and y[n] != y[a]
        ]
    expected = sum(vals) / len(vals)
    assert float(label_loss(z, y, alpha, mining)) == pytest.approx(expected, rel=1e-9)


def test_label_loss_is_zero_when_classes_are_farther_apart_than_the_margin():
    z = torch.tensor([[0.0], [0.1], [20.0], [20.1]], dtype=torch.float64)
    y = torch.tensor([0, 0, 1, 1])
    for mining in ("batch_hard", "batch_all"):
        assert float(label_loss(z, y, alpha=8.0, mining=mining)) == 0.0


def test_radial_loss_equals_the_pair_loop(gen):
    z = torch.randn(7, 3, generator=gen, dtype=torch.float64)
    u = torch.randn(7, 10, generator=gen, dtype=torch.float64)
    lam = 0.37
    vals = [abs(_d(z[i], z[j]) - lam * _d(u[i], u[j])) for i in range(7) for j in range(i + 1, 7)]
    assert float(radial_loss(z, u, lam)) == pytest.approx(sum(vals) / len(vals), rel=1e-9)


def test_radial_loss_is_zero_for_exactly_proportional_distances(gen):
    u = torch.randn(6, 4, generator=gen, dtype=torch.float64)
    assert float(radial_loss(0.1 * u, u, 0.1)) == pytest.approx(0.0, abs=1e-5)


def _finite_grad(loss_fn, z):
    z = z.clone().requires_grad_(True)
    loss = loss_fn(z)
    loss.backward()
    return bool(torch.isfinite(loss)) and bool(torch.isfinite(z.grad).all())


def test_single_class_batch_gives_zero_label_loss_with_finite_gradients(gen):
    z = torch.randn(6, 3, generator=gen)
    y = torch.zeros(6, dtype=torch.long)
    for mining in ("batch_hard", "batch_all"):
        assert float(label_loss(z, y, 8.0, mining)) == 0.0
        assert _finite_grad(lambda t, m=mining: label_loss(t, y, 8.0, m), z)


def test_batches_without_valid_triplets_or_pairs_give_zero_and_finite_gradients(gen):
    one = torch.randn(1, 6, 3, generator=gen)
    assert float(invariance_loss(one)) == 0.0 and _finite_grad(invariance_loss, one)
    no_views = torch.randn(4, 1, 3, generator=gen)
    assert float(invariance_loss(no_views)) == 0.0
    u = torch.randn(1, 5)
    assert float(radial_loss(one[:, 0], u)) == 0.0


def test_identical_embeddings_give_finite_gradients():
    z = torch.zeros(4, 6, 3)  # every patch and view at the same point
    y = torch.tensor([0, 0, 1, 1])
    u = torch.zeros(4, 5)
    assert _finite_grad(invariance_loss, z)
    assert _finite_grad(lambda t: label_loss(t[:, 0], y), z)
    assert _finite_grad(lambda t: radial_loss(t[:, 0], u), z)


def test_weighted_sum_skips_terms_whose_weight_is_zero(gen):
    z = torch.randn(6, 6, 3, generator=gen, dtype=torch.float64)
    y = torch.tensor([0, 1, 2, 3, 0, 1])
    u = torch.randn(6, 8, generator=gen, dtype=torch.float64)
    cfg = LossConfig(w_inv=2.0, w_rad=0.0, w_lab=1.5)
    terms = metric_loss(z, y, None, cfg)  # no Upsilon needed: L_rad is not computed
    assert float(terms.rad) == 0.0
    expected = 2.0 * invariance_loss(z, cfg.alpha_inv) + 1.5 * label_loss(z[:, 0], y, 8.0)
    assert float(terms.total) == pytest.approx(float(expected), rel=1e-12)
    full = metric_loss(z, y, u, LossConfig())
    assert float(full.rad) == pytest.approx(float(radial_loss(z[:, 0], u, 0.1)), rel=1e-12)
