"""Configuration files: typed, strict, with --set overrides and errors naming file and key."""

import pytest
from conftest import REPO

from mummi_ml.cli import main
from mummi_ml.config import Config, dump_config, load_config
from mummi_ml.errors import ConfigError


@pytest.mark.parametrize("name", ["quickstart.yaml", "paper.yaml"])
def test_shipped_configs_load(name):
    assert isinstance(load_config(REPO / "configs" / name), Config)


def test_paper_config_has_the_papers_hyperparameters():
    cfg = load_config(REPO / "configs" / "paper.yaml")
    assert cfg.model.latent_dim == 9
    assert (cfg.loss.alpha_inv, cfg.loss.w_inv, cfg.loss.lambda_rad) == (1.0, 2.0, 0.1)
    assert (cfg.loss.w_rad, cfg.loss.alpha_lab, cfg.loss.w_lab) == (2.0, 8.0, 1.0)
    assert cfg.train.learning_rates == [1e-3, 5e-3, 1e-4, 1e-5]
    assert cfg.train.lr_boundaries == [10, 20, 30]
    assert cfg.train.validation_fraction == 0.1


def test_unknown_key_names_key_and_file(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("train:\n  epochz: 3\n")
    with pytest.raises(ConfigError, match=r"c\.yaml: train\.epochz: unknown key"):
        load_config(path)


def test_wrong_type_names_key_file_and_value(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("train:\n  epochs: ten\n")
    with pytest.raises(ConfigError, match=r"c\.yaml: train\.epochs: .*integer.*'ten'"):
        load_config(path)


def test_override_sets_a_typed_value():
    overrides = ["train.epochs=7", "loss.lambda_rad=0.5", "model.profile_channels=[1, 2]"]
    cfg = load_config(None, overrides)
    assert cfg.train.epochs == 7 and cfg.loss.lambda_rad == 0.5
    assert cfg.model.profile_channels == [1, 2]


def test_override_of_unknown_key_is_an_error():
    with pytest.raises(ConfigError, match=r"train\.nope: unknown key"):
        load_config(None, ["train.nope=1"])


def test_override_without_equals_is_an_error():
    with pytest.raises(ConfigError, match="expected KEY=VALUE"):
        load_config(None, ["train.epochs"])


def test_missing_config_file_is_named(tmp_path):
    with pytest.raises(ConfigError, match="absent.yaml: config file not found"):
        load_config(tmp_path / "absent.yaml")


def test_invalid_yaml_is_an_error(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("train: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(path)


def test_cross_field_rule_is_checked():
    with pytest.raises(ConfigError, match="learning_rates needs one more value"):
        load_config(None, ["train.lr_boundaries=[1]"])


def test_dump_round_trips(tmp_path):
    cfg = load_config(REPO / "configs" / "paper.yaml", ["train.epochs=3"])
    path = tmp_path / "dumped.yaml"
    path.write_text(dump_config(cfg))
    assert load_config(path) == cfg


def test_cli_reports_config_error_in_one_line(capsys):
    assert main(["config", "--set", "train.epochs=abc"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("mummi-ml config: error:") and "train.epochs" in err
    assert "\n" not in err
