"""The encoder: the paper's architecture, shapes, views and standardisation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mummi_ml.metric import Encoder, apply_transform, learning_rate_at
from mummi_ml.patch import TRANSFORM_GROUPS, apply_transforms


def test_encoder_maps_channel_last_patches_to_latent_dim():
    enc = Encoder(latent_dim=5)
    assert enc(torch.randn(3, 37, 37, 14)).shape == (3, 5)


def test_encoder_has_the_papers_layers_and_parameter_count():
    enc = Encoder()
    # depthwise 14x6, pointwise 84x6 + 6, BN 2x6, conv 6*9*16+16, BN 2x16, conv 16*9*16+16,
    # BN 2x16, dense 1024x9+9, BN 2x9
    expected = 84 + 504 + 6 + 12 + 880 + 32 + 2320 + 32 + 9225 + 18
    assert sum(p.numel() for p in enc.parameters()) == expected
    assert enc.dense.in_features == 8 * 8 * 16  # 37 -> 18 -> 8 with 'valid' padding


def test_encoder_rejects_channel_first_input():
    with pytest.raises(ValueError, match="channel-last"):
        Encoder()(torch.randn(2, 14, 37, 37))


@pytest.mark.parametrize("group", ["paper", "dihedral"])
def test_views_equal_the_encoder_on_explicitly_transformed_patches(group):
    torch.manual_seed(0)
    enc = Encoder(transform_group=group).double()
    x = torch.rand(4, 37, 37, 14, dtype=torch.float64) * 3
    z = enc(x, views=True)
    names = TRANSFORM_GROUPS[group]
    explicit = torch.stack([x] + [apply_transform(x, n) for n in names], 1).reshape(-1, 37, 37, 14)
    assert z.shape == (4, 1 + len(names), 9)
    torch.testing.assert_close(z, enc(explicit).reshape(4, 1 + len(names), 9))


def test_torch_transforms_match_the_numpy_ones():
    x = np.random.default_rng(1).random((2, 37, 37, 3)).astype(np.float32)
    xt = torch.from_numpy(x)
    ours = torch.stack([apply_transform(xt, n) for n in TRANSFORM_GROUPS["dihedral"]], 1)
    np.testing.assert_array_equal(ours.numpy(), apply_transforms(x, "dihedral"))


def test_stats_standardise_inside_the_encoder():
    torch.manual_seed(0)
    enc = Encoder().double().eval()
    mean, std = np.linspace(1, 2, 14), np.linspace(0.5, 1.5, 14)
    x = torch.rand(3, 37, 37, 14, dtype=torch.float64)
    z_std = enc((x - torch.from_numpy(mean)) / torch.from_numpy(std))
    enc.set_stats(mean, std)
    torch.testing.assert_close(enc(x), z_std)


def test_learning_rate_follows_the_papers_piecewise_schedule():
    lrs, bounds = [1e-3, 5e-3, 1e-4, 1e-5], [10, 20, 30]
    got = [learning_rate_at(e, lrs, bounds) for e in (0, 9, 10, 19, 20, 29, 30, 99)]
    assert got == [1e-3, 1e-3, 5e-3, 5e-3, 1e-4, 1e-4, 1e-5, 1e-5]


def test_inference_with_folded_batchnorm_equals_the_layer_by_layer_eval():
    torch.manual_seed(0)
    enc = Encoder().double().eval()
    for bn in (enc.bn1, enc.bn2, enc.bn3, enc.bn4):
        bn.running_mean.uniform_(-1, 1)
        bn.running_var.uniform_(0.5, 2.0)
        bn.weight.data.uniform_(0.5, 2.0)
        bn.bias.data.uniform_(-1, 1)
    x = torch.rand(5, 37, 37, 14, dtype=torch.float64)
    layer_by_layer = enc(x)  # grad enabled: the unfolded path
    with torch.inference_mode():
        folded = enc(x)
    torch.testing.assert_close(folded, layer_by_layer.detach())
