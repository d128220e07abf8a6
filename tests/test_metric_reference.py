"""The fast training path equals the implementation it replaced (tests/reference_metric.py):
same loss values and gradients within float tolerance, for both models."""

from __future__ import annotations

import pytest
import reference_metric as ref
import torch

from mummi_ml.metric import Encoder, GlobalBatchNorm, LossConfig, metric_loss
from mummi_ml.metric.transforms import pixel_permutations


def _batch(n: int, dtype: torch.dtype, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 37, 37, 14, generator=g, dtype=dtype) * 3
    labels = torch.randint(0, 4, (n,), generator=g)
    ups = torch.randn(n, 40, generator=g, dtype=dtype)
    return x, labels, ups


def _encoder(dtype: torch.dtype, **kw) -> Encoder:
    torch.manual_seed(1)
    enc = Encoder(**kw).to(dtype)
    for bn in (enc.bn1, enc.bn2, enc.bn3, enc.bn4):  # away from the trivial initial values
        bn.weight.data.uniform_(0.5, 2.0)
        bn.bias.data.uniform_(-1, 1)
    return enc


def _assert_grads_close(new, old, rel: float) -> None:
    """Each gradient within ``rel`` of the largest gradient entry of any parameter (gradients
    that are exactly 0 in exact arithmetic, e.g. biases before a BatchNorm, are rounding noise
    in both implementations)."""
    scale = max(float(g.abs().max()) for g in old)
    for a, b in zip(new, old, strict=True):
        torch.testing.assert_close(a, b, rtol=rel, atol=rel * scale)


TOL = {torch.float64: 1e-10, torch.float32: 2e-4}


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("mining", ["batch_hard", "batch_all"])
def test_learned_model_loss_and_gradients_equal_the_reference(dtype, mining):
    enc = _encoder(dtype)
    x, labels, ups = _batch(12, dtype)
    cfg = LossConfig(label_mining=mining)
    params = list(enc.parameters())
    terms = metric_loss(enc(x, views=True), labels, ups, cfg)
    new = torch.autograd.grad(terms.total, params)
    old_terms = ref.metric_loss(ref.forward_views(enc, x), labels, ups, cfg)
    old = torch.autograd.grad(old_terms[0], params)
    for a, b in zip((terms.total, terms.inv, terms.rad, terms.lab), old_terms, strict=True):
        torch.testing.assert_close(a, b, rtol=TOL[dtype], atol=TOL[dtype])
    _assert_grads_close(new, old, TOL[dtype])


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_learned_model_without_views_equals_the_reference(dtype):
    # L_inv off: the encoder embeds the patches alone
    enc = _encoder(dtype)
    x, labels, ups = _batch(10, dtype, seed=2)
    cfg = LossConfig(w_inv=0.0)
    params = list(enc.parameters())
    total = metric_loss(enc(x)[:, None], labels, ups, cfg).total
    new = torch.autograd.grad(total, params)
    old_total = ref.metric_loss(ref.forward(enc, x)[:, None], labels, ups, cfg)[0]
    old = torch.autograd.grad(old_total, params)
    torch.testing.assert_close(total, old_total, rtol=TOL[dtype], atol=TOL[dtype])
    _assert_grads_close(new, old, TOL[dtype])


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_group_model_loss_and_gradients_equal_the_brute_force_views(dtype):
    # 8 explicitly transformed copies through the plain layers, mean, BatchNorm 4
    enc = _encoder(dtype, invariance="group")
    x, labels, ups = _batch(12, dtype, seed=3)
    cfg = LossConfig(w_inv=0.0)
    params = list(enc.parameters())
    z = enc(x)
    torch.testing.assert_close(z, ref.group_forward(enc, x), rtol=TOL[dtype], atol=TOL[dtype])
    total = metric_loss(z[:, None], labels, ups, cfg).total
    new = torch.autograd.grad(total, params)
    old_total = ref.metric_loss(ref.group_forward(enc, x)[:, None], labels, ups, cfg)[0]
    old = torch.autograd.grad(old_total, params)
    torch.testing.assert_close(total, old_total, rtol=TOL[dtype], atol=TOL[dtype])
    _assert_grads_close(new, old, TOL[dtype])


def test_batchnorm_running_statistics_equal_those_of_normalising_every_view():
    # BatchNorm 1 now runs on the patches before the views are formed; its running averages
    # must still be those of the old normalisation over all N * (1 + T) views
    enc = _encoder(torch.float64)
    x, _, _ = _batch(6, torch.float64, seed=4)
    enc(x, views=True)
    old_bn = GlobalBatchNorm(enc.bn1.num_features, enc.bn1.eps, enc.bn1.momentum).double()
    h = ref._first_stage(enc, x)
    table = pixel_permutations("paper", 37)
    views = h.reshape(6, -1, h.shape[-1])[:, table].permute(0, 1, 3, 2).reshape(36, -1, 37, 37)
    old_bn(views.detach())
    torch.testing.assert_close(enc.bn1.running_mean, old_bn.running_mean, rtol=1e-12, atol=0)
    torch.testing.assert_close(enc.bn1.running_var, old_bn.running_var, rtol=1e-12, atol=0)


def test_eval_mode_views_equal_the_explicitly_transformed_patches():
    # validation embeds the views with folded BatchNorm and transformed conv2 kernels
    enc = _encoder(torch.float64).eval()
    for bn in (enc.bn1, enc.bn2, enc.bn3, enc.bn4):
        bn.running_mean.uniform_(-1, 1)
        bn.running_var.uniform_(0.5, 2.0)
    x, _, _ = _batch(5, torch.float64, seed=5)
    with torch.no_grad():
        fast = enc(x, views=True)
        slow = torch.stack([enc(v) for v in ref.views_of(x, "paper").unbind(1)], 1)
    torch.testing.assert_close(fast, slow, rtol=1e-10, atol=1e-10)
