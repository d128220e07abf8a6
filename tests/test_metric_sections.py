"""A model directory's configuration read back typed: Metric's model/loss/train sections, the
one place where an older metric.json's missing keys take the defaults, and the loss terms named
once for training, sweeps and reports."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from mummi_ml.config_loader import with_overrides
from mummi_ml.errors import ConfigError
from mummi_ml.evaluate.config import SWEEP_PARAMETERS
from mummi_ml.evaluate.representations import model_representation
from mummi_ml.evaluate.sweep import ABLATIONS
from mummi_ml.metric import (
    LOSS_TERMS,
    LossConfig,
    Metric,
    MetricError,
    ModelConfig,
    TrainConfig,
    build_encoder,
    write_model_dir,
)
from mummi_ml.patch import ChannelStats

#: keys of metric.json's config added after the first model directories were written
#: (``model.invariance`` in 86d6cb3, ``train.precision`` in e9fdd33)
_LATER_KEYS = {"model": ("invariance",), "train": ("precision",)}


@pytest.fixture
def model_dir(tmp_path) -> Path:
    torch.manual_seed(0)
    stats = ChannelStats.from_batches(
        [np.random.default_rng(0).random((10, 37, 37, 14), dtype=np.float32)]
    )
    model = ModelConfig(latent_dim=5)
    return write_model_dir(tmp_path / "m", build_encoder(model).eval(), stats, model,
                           LossConfig(lambda_rad=0.2, w_inv=0.5),
                           TrainConfig(embed_batch_size=7, epochs=3), "test")


def _rewrite_config(model_dir: Path, edit) -> None:
    path = model_dir / "metric.json"
    meta = json.loads(path.read_text())
    edit(meta["config"])
    path.write_text(json.dumps(meta))


def test_metric_exposes_the_typed_sections_it_was_trained_with(model_dir):
    m = Metric.load(model_dir, device="cpu")
    assert m.model_cfg == ModelConfig(latent_dim=5)
    assert m.loss_cfg == LossConfig(lambda_rad=0.2, w_inv=0.5)
    assert m.train_cfg == TrainConfig(embed_batch_size=7, epochs=3)
    assert m.batch_size == 7


def test_an_older_metric_json_loads_with_the_config_defaults(model_dir):
    def drop_later_keys(config):
        for section, keys in _LATER_KEYS.items():
            for key in keys:
                del config[section][key]
        del config["loss"]["w_rad"], config["train"]["embed_batch_size"]

    _rewrite_config(model_dir, drop_later_keys)
    m = Metric.load(model_dir, device="cpu")
    assert m.model_cfg.invariance == ModelConfig().invariance == "learned"
    assert m.train_cfg.precision == "float32"
    assert m.train_cfg.embed_batch_size == TrainConfig().embed_batch_size == m.batch_size
    assert m.loss_cfg.w_rad == LossConfig().w_rad == 2.0  # the trained default, not 1.0
    assert m.loss_cfg.w_inv == 0.5  # what was written is kept
    assert m.config["loss"] == m.loss_cfg.model_dump(mode="json")


def test_a_metric_json_without_loss_and_train_sections_takes_their_defaults(model_dir):
    def drop_sections(config):
        del config["loss"], config["train"]

    _rewrite_config(model_dir, drop_sections)
    m = Metric.load(model_dir, device="cpu")
    assert m.loss_cfg == LossConfig() and m.train_cfg == TrainConfig()
    assert model_representation(m).lam == m.lambda_rad  # trained with L_rad: its own lambda


def test_a_model_trained_without_l_rad_has_its_lambda_fitted(model_dir):
    _rewrite_config(model_dir, lambda config: config["loss"].update(w_rad=0.0))
    assert model_representation(Metric.load(model_dir, device="cpu")).lam is None


def test_a_loss_section_the_config_refuses_is_a_malformed_metric_json(model_dir):
    _rewrite_config(model_dir, lambda config: config["loss"].update(w_rad=-1.0))
    with pytest.raises(MetricError, match="metric.json: malformed"):
        Metric.load(model_dir, device="cpu")


def test_every_loss_term_names_fields_of_the_loss_config():
    fields = set(LossConfig.model_fields)
    assert [t.name for t in LOSS_TERMS] == ["L_inv", "L_rad", "L_lab"]
    assert all({t.weight, t.parameter} <= fields for t in LOSS_TERMS)
    assert {f"loss.{t.weight}" for t in LOSS_TERMS} <= set(SWEEP_PARAMETERS)
    assert set(ABLATIONS) >= {t.name for t in LOSS_TERMS}


def test_active_terms_are_those_with_a_positive_weight():
    assert [t.name for t in LossConfig(w_inv=0.0).active_terms()] == ["L_rad", "L_lab"]


def test_with_overrides_returns_a_validated_copy():
    base = LossConfig()
    assert with_overrides(base, {"w_lab": 0.0}).w_lab == 0.0 and base.w_lab == 1.0
    with pytest.raises(ConfigError, match="w_rad"):
        with_overrides(base, {"w_rad": -1.0})
