"""The group model (``model.invariance: group``): invariant to D4 by construction."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from mummi_ml.config import load_config
from mummi_ml.continuum import ContinuumConfig, simulate_patches
from mummi_ml.metric import (
    Encoder,
    LossConfig,
    Metric,
    ModelConfig,
    TrainConfig,
    train_model,
    write_model_dir,
)
from mummi_ml.metric import apply_transform as transform_t
from mummi_ml.patch import (
    TRANSFORM_GROUPS,
    ChannelStats,
    PatchBatch,
    apply_transform,
    write_patches,
)

REPO = Path(__file__).resolve().parents[1]
NON_IDENTITY = TRANSFORM_GROUPS["dihedral"]  # the 7 non-identity elements of D4


def _group_model(tmp_path: Path, stats_from: np.ndarray) -> Metric:
    """A float32 group model with non-trivial BatchNorm statistics, loaded from its directory."""
    torch.manual_seed(0)
    cfg = ModelConfig(invariance="group")
    enc = Encoder(invariance="group").eval()
    for bn in (enc.bn1, enc.bn2, enc.bn3, enc.bn4):
        bn.running_mean.data.uniform_(-1, 1)
        bn.running_var.data.uniform_(0.5, 2.0)
        bn.weight.data.uniform_(0.5, 2.0)
        bn.bias.data.uniform_(-1, 1)
    stats = ChannelStats(mean=stats_from.mean((0, 1, 2)), std=stats_from.std((0, 1, 2)) + 1e-3,
                         count=len(stats_from))
    enc.set_stats(stats.mean, stats.std)
    write_model_dir(tmp_path / "model", enc, stats, cfg, LossConfig(w_inv=0.0), TrainConfig(), "t")
    return Metric.load(tmp_path / "model", device="cpu")


def _campaign_patches(n: int) -> np.ndarray:
    """Patches of the drifting ``campaign`` preset, most of them after the drift."""
    cfg = ContinuumConfig(domain_pixels=48, n_ras=4, equilibration_us=0.1,
                          control_patches_per_frame=1, preset="campaign")
    cfg.campaign.drift_time_us = 0.4
    return np.concatenate([b.x for b in simulate_patches(cfg, n)])


def _worst_ratio(m: Metric, x: np.ndarray) -> dict[str, float]:
    """Per transformation: max_i d_z(x_i, rho(x_i)) / median pair distance d_z(x_i, x_j)."""
    z = m.embed(x)
    iu = np.triu_indices(len(z), 1)
    median = float(np.median(np.linalg.norm(z[iu[0]] - z[iu[1]], axis=1)))
    assert median > 0
    return {
        name: float(np.linalg.norm(m.embed(apply_transform(x, name)) - z, axis=1).max()) / median
        for name in NON_IDENTITY
    }


def test_group_embedding_is_invariant_to_every_d4_element_on_random_patches(tmp_path):
    x = np.random.default_rng(0).gamma(2.0, 0.5, (48, 37, 37, 14)).astype(np.float32)
    ratios = _worst_ratio(_group_model(tmp_path, x), x)
    assert max(ratios.values()) <= 1e-5, ratios


def test_group_embedding_is_invariant_to_every_d4_element_on_drifted_campaign_patches(tmp_path):
    train_like = np.random.default_rng(1).gamma(2.0, 0.5, (32, 37, 37, 14)).astype(np.float32)
    x = _campaign_patches(48)  # standardised with other data's statistics: shifted inputs
    ratios = _worst_ratio(_group_model(tmp_path, train_like), x)
    assert max(ratios.values()) <= 1e-5, ratios


def test_group_embedding_is_bit_identical_under_d4_on_cpu(tmp_path):
    # the 8 views of rho(x) are those of x in another order; the sorted mean does not see it
    x = np.random.default_rng(2).gamma(2.0, 0.5, (9, 37, 37, 14)).astype(np.float32)
    m = _group_model(tmp_path, x)
    z = m.embed(x)
    for name in NON_IDENTITY:
        np.testing.assert_array_equal(m.embed(apply_transform(x, name)), z, err_msg=name)


def test_group_embedding_is_invariant_in_training_mode_up_to_rounding():
    torch.manual_seed(0)
    enc = Encoder(invariance="group").train()
    x = torch.rand(16, 37, 37, 14) * 3
    with torch.no_grad():
        z = enc(x)
        zs = {name: enc(transform_t(x, name).contiguous()) for name in NON_IDENTITY}
    median = torch.pdist(z).median()
    for name, zt in zs.items():
        assert float((zt - z).norm(dim=1).max()) <= 1e-5 * float(median), name


def test_group_model_views_are_its_embedding_repeated():
    enc = Encoder(invariance="group", transform_group="paper").eval()
    x = torch.rand(3, 37, 37, 14)
    with torch.no_grad():
        zv, z = enc(x, views=True), enc(x)
    assert zv.shape == (3, 6, 9)
    torch.testing.assert_close(zv, z[:, None].expand(-1, 6, -1), rtol=0, atol=0)


def test_invariance_defaults_to_learned_and_the_paper_config_keeps_it():
    assert ModelConfig().invariance == "learned"
    assert load_config(REPO / "configs" / "paper.yaml").model.invariance == "learned"


def test_unknown_invariance_is_rejected():
    with pytest.raises(ValueError, match="invariance"):
        Encoder(invariance="canonical")
    with pytest.raises(ValueError, match="invariance"):
        ModelConfig(invariance="canonical")


def test_group_model_trains_without_l_inv_and_reloads_as_a_group_model(tmp_path):
    rng = np.random.default_rng(0)
    n = 96
    x = np.minimum(rng.gamma(2.0, 0.5, size=(n, 37, 37, 14)), 3.0).astype(np.float32)
    n_ras = rng.integers(0, 3, n)
    y = np.stack([n_ras, np.minimum(n_ras, rng.integers(0, 2, n))], 1).astype(np.int32)
    data = tmp_path / "p.h5"
    write_patches(data, PatchBatch.from_arrays(x, y, ids=np.arange(n)))
    train = TrainConfig(epochs=1, batch_size=16, num_threads=1, device="cpu", val_max_patches=16,
                        val_metric_patches=16)
    out = train_model(ModelConfig(invariance="group"), LossConfig(w_inv=0.0), train, [data],
                      tmp_path / "run", progress=False)
    m = Metric.load(out, device="cpu")
    assert m.config["model"]["invariance"] == "group"
    z = m.embed(x[:8])
    np.testing.assert_array_equal(m.embed(apply_transform(x[:8], "rot90")), z)
    log = (out / "train_log.csv").read_text().splitlines()
    header = log[0].split(",")
    assert float(log[1].split(",")[header.index("val_overlap_pct")]) == 0.0
