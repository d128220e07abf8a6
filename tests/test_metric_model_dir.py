"""The model directory (metric.json + weights.pt), Metric.load/embed and the CLI commands."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from mummi_ml import __version__
from mummi_ml.cli import main
from mummi_ml.metric import (
    LossConfig,
    Metric,
    MetricError,
    ModelConfig,
    TrainConfig,
    build_encoder,
    train_model,
    weights_hash,
)
from mummi_ml.patch import PatchBatch, read_patches, write_patches


def _make(path: Path, n: int, seed: int) -> Path:
    rng = np.random.default_rng(seed)
    x = np.minimum(rng.gamma(2.0, 0.5, size=(n, 37, 37, 14)), 3.0).astype(np.float32)  # physical
    n_ras = rng.integers(0, 3, n)
    y = np.stack([n_ras, np.minimum(n_ras, rng.integers(0, 2, n))], 1).astype(np.int32)
    write_patches(path, PatchBatch.from_arrays(x, y, ids=np.arange(n)))
    return path


@pytest.fixture(scope="module")
def data_file(tmp_path_factory) -> Path:
    return _make(tmp_path_factory.mktemp("data") / "patches.h5", 120, seed=4)


@pytest.fixture(scope="module")
def model_dir(data_file, tmp_path_factory) -> Path:
    cfg = TrainConfig(epochs=1, batch_size=16, num_threads=1, device="cpu", val_max_patches=16,
                      val_metric_patches=8, embed_batch_size=7)
    return train_model(ModelConfig(latent_dim=5), LossConfig(lambda_rad=0.2), cfg, [data_file],
                       tmp_path_factory.mktemp("model"), progress=False)


def test_metric_json_describes_the_model(model_dir, data_file):
    meta = json.loads((model_dir / "metric.json").read_text())
    assert meta["latent_dim"] == 5 and meta["lambda_rad"] == 0.2
    assert meta["profile_channels"] == list(range(8))
    assert meta["package_version"] == __version__
    assert len(meta["standardisation"]["mean"]) == 14
    assert meta["config"]["loss"]["lambda_rad"] == 0.2
    assert len(meta["data_hash"]) == 16


def test_weights_load_without_pickle_and_match_the_version(model_dir):
    state = torch.load(model_dir / "weights.pt", weights_only=True)
    m = Metric.load(model_dir, device="cpu")
    assert m.version == weights_hash(state)
    assert (m.latent_dim, m.lambda_rad, m.profile_channels) == (5, 0.2, list(range(8)))


def test_embed_maps_raw_patches_to_float32_latent_vectors_in_batches(model_dir, data_file):
    m = Metric.load(model_dir, device="cpu")
    x = read_patches(data_file).x[:20]
    z = m.embed(x)  # embed_batch_size 7: three batches
    assert z.shape == (20, 5) and z.dtype == np.float32
    np.testing.assert_allclose(z, m.embed(x, batch_size=100), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(z[3:4], m.embed(x[3:4]), rtol=1e-5, atol=1e-5)


def test_embed_standardises_with_the_models_statistics(model_dir, data_file):
    m = Metric.load(model_dir, device="cpu")
    enc = build_encoder(ModelConfig(latent_dim=5)).eval()
    state = torch.load(model_dir / "weights.pt", weights_only=True)
    state["mean"], state["std"] = torch.zeros(14), torch.ones(14)
    enc.load_state_dict(state)
    x = read_patches(data_file).x[:6]
    with torch.no_grad():
        ref = enc(torch.from_numpy(m.stats.standardise(x))).numpy()
    np.testing.assert_allclose(m.embed(x), ref, rtol=1e-4, atol=1e-4)


def test_embed_rejects_channel_first_patches(model_dir):
    with pytest.raises(MetricError, match="expected"):
        Metric.load(model_dir, device="cpu").embed(np.zeros((2, 14, 37, 37), np.float32))


def test_loading_a_directory_without_a_model_names_it(tmp_path):
    with pytest.raises(MetricError, match="not a model directory"):
        Metric.load(tmp_path)


def test_cli_embed_writes_one_row_per_patch(model_dir, data_file, tmp_path, capsys):
    out = tmp_path / "z.npy"
    assert main(["embed", "--model", str(model_dir), "--data", str(data_file), "--out", str(out),
                 "--device", "cpu", "--no-progress"]) == 0
    z = np.load(out)
    assert z.shape == (120, 5)
    np.testing.assert_allclose(z[:10], Metric.load(model_dir, "cpu").embed(
        read_patches(data_file).x[:10]), rtol=1e-5, atol=1e-5)


def test_cli_train_then_resume(data_file, tmp_path):
    sets = ["--set", "train.epochs=1", "--set", "train.batch_size=16", "--set",
            "train.device=cpu", "--set", "train.val_max_patches=16", "--set",
            "train.val_metric_patches=8"]
    args = ["train", "--data", str(data_file), "--out", str(tmp_path / "run"), "--no-progress"]
    assert main(args + sets) == 0
    assert (tmp_path / "run" / "metric.json").is_file()
    assert main(args + sets + ["--resume", "--set", "train.epochs=2"]) == 0
    assert len((tmp_path / "run" / "train_log.csv").read_text().splitlines()) == 3


def test_cli_train_reports_a_missing_data_file_in_one_line(tmp_path, capsys):
    code = main(["train", "--data", str(tmp_path / "nope.h5"), "--out", str(tmp_path / "r")])
    assert code == 2
    assert "nope.h5" in capsys.readouterr().err
