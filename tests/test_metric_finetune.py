"""Fine-tuning (``mummi-ml train --init-from``): weights really loaded, lineage, COMPLETE marker
written last, refusals (one line, exit 2)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from mummi_ml.metric import LossConfig, ModelConfig, Trainer, train_model
from mummi_ml.metric.errors import MetricError
from mummi_ml.metric.model_dir import COMPLETE_MARKER, Metric, is_complete
from mummi_ml.parallel import local_context
from mummi_ml.patch import PatchFile
from mummi_ml.patch.profiles import radial_profiles
from mummi_ml.patch.stats import ChannelStats
from tests.test_metric_train import make_patches, small_train

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def data_file(tmp_path_factory) -> Path:
    return make_patches(tmp_path_factory.mktemp("data") / "patches.h5", 96, seed=4)


@pytest.fixture(scope="module")
def parent(data_file, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("parent")
    return train_model(ModelConfig(latent_dim=5), LossConfig(), small_train(epochs=1),
                       [data_file], out, progress=False)


def _first_batch_loss(trainer: Trainer) -> float:
    trainer.setup(resume=False)
    batch = next(iter(trainer.data.batches(0, 0)))
    loss = trainer.batch_loss(batch)["loss"]
    trainer.data.close()
    return loss


def test_init_from_starts_with_the_parents_loss(parent, data_file, tmp_path):
    ctx = local_context()
    child = Trainer(ModelConfig(latent_dim=5), LossConfig(), small_train(), [data_file],
                    tmp_path / "child", ctx, progress=False, init_from=parent)
    reference = Trainer(ModelConfig(latent_dim=5), LossConfig(), small_train(), [data_file],
                        tmp_path / "ref", ctx, progress=False)
    reference.setup(resume=False)
    fresh = reference.batch_loss(next(iter(reference.data.batches(0, 0))))["loss"]
    reference.encoder.load_state_dict(torch.load(parent / "weights.pt", weights_only=True))
    parents = reference.batch_loss(next(iter(reference.data.batches(0, 0))))["loss"]
    reference.data.close()
    assert _first_batch_loss(child) == pytest.approx(parents, rel=1e-6)
    assert parents != pytest.approx(fresh, rel=1e-3)  # a fresh encoder would not match


def test_fine_tuned_model_records_parent_schedule_and_lineage(parent, data_file, tmp_path):
    cfg = small_train(finetune_epochs=2, finetune_learning_rates=[3e-4, 1e-5],
                      finetune_lr_boundaries=[1])
    child = train_model(ModelConfig(latent_dim=5), LossConfig(), cfg, [data_file],
                        tmp_path / "c1", progress=False, init_from=parent)
    grandchild = train_model(ModelConfig(latent_dim=5), LossConfig(), cfg, [data_file],
                             tmp_path / "c2", progress=False, init_from=child)
    pmeta = json.loads((parent / "metric.json").read_text())
    cmeta = json.loads((child / "metric.json").read_text())
    gmeta = json.loads((grandchild / "metric.json").read_text())
    assert cmeta["parent"]["version"] == pmeta["version"]
    assert gmeta["lineage"] == [pmeta["version"], cmeta["version"]]
    assert cmeta["epochs_trained"] == 2
    assert cmeta["config"]["train"]["learning_rates"] == [3e-4, 1e-5]
    assert cmeta["standardisation"] == pmeta["standardisation"]


def test_fine_tuning_targets_the_upsilon_of_the_parents_standardisation(parent, tmp_path):
    # other data (other statistics): L_rad's target must stay what evaluation measures against,
    # the radial profiles of patches standardised as the model embeds them (the parent's stats)
    other = make_patches(tmp_path / "other.h5", 96, seed=11)
    child = Trainer(ModelConfig(latent_dim=5), LossConfig(), small_train(), [other],
                    tmp_path / "child", local_context(), progress=False, init_from=parent)
    child.setup(resume=False)
    x, _, upsilon = child.data.validation_set(8)
    child.data.close()
    pstats = Metric.load(parent).stats
    expected = radial_profiles(pstats.standardise(x), ModelConfig().profile_channels)
    np.testing.assert_allclose(upsilon, expected, rtol=1e-5, atol=1e-6)
    own = ChannelStats.from_batches([PatchFile(other)[np.arange(96)].x])
    assert not np.allclose(own.mean, pstats.mean)  # the data's own statistics would differ


def test_resuming_a_fine_tuning_without_its_parent_is_refused(parent, data_file, tmp_path):
    train_model(ModelConfig(latent_dim=5), LossConfig(), small_train(finetune_epochs=1),
                [data_file], tmp_path / "c", progress=False, init_from=parent)
    with pytest.raises(MetricError, match="cannot resume fine-tuning from model None"):
        train_model(ModelConfig(latent_dim=5), LossConfig(), small_train(finetune_epochs=2),
                    [data_file], tmp_path / "c", progress=False, resume=True)


def test_complete_marker_is_written_last(parent):
    files = [p for p in parent.iterdir() if p.is_file()]
    marker = parent / COMPLETE_MARKER
    assert is_complete(parent)
    assert json.loads(marker.read_text())["version"] == json.loads(
        (parent / "metric.json").read_text())["version"]
    newest_other = max(p.stat().st_mtime_ns for p in files if p.name != COMPLETE_MARKER)
    assert marker.stat().st_mtime_ns >= newest_other


def _cli(*args: str) -> subprocess.CompletedProcess:
    env = {"PYTHONPATH": str(REPO), "PATH": str(Path(sys.executable).parent) + ":/usr/bin:/bin",
           "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "mummi_ml", "train", *args],
                          capture_output=True, text=True, timeout=120, env=env)


def test_another_latent_dimension_is_refused_in_one_line(parent, data_file, tmp_path):
    proc = _cli("--data", str(data_file), "--out", str(tmp_path / "x"), "--init-from",
                str(parent), "--set", "model.latent_dim=9", "--no-progress")
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1
    assert "model.latent_dim = 9" in proc.stderr and "5 in the parent" in proc.stderr
    assert not (tmp_path / "x").exists()


def test_init_from_a_directory_that_is_no_model_is_refused(data_file, tmp_path):
    proc = _cli("--data", str(data_file), "--out", str(tmp_path / "x"), "--init-from",
                str(tmp_path), "--no-progress")
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1
    assert "--init-from" in proc.stderr and "not a model directory" in proc.stderr


def test_init_from_into_the_parents_own_directory_is_refused(parent, data_file):
    proc = _cli("--data", str(data_file), "--out", str(parent), "--init-from", str(parent),
                "--set", "model.latent_dim=5", "--no-progress")
    assert proc.returncode == 2 and "must differ from the parent" in proc.stderr


@pytest.mark.mpi
def test_fine_tuning_runs_data_parallel_under_mpiexec(run_mpi, parent, data_file, tmp_path):
    out = tmp_path / "mpi"
    sets = ["model.latent_dim=5", "train.batch_size=16", "train.num_threads=1",
            "train.device=cpu", "train.val_max_patches=32", "train.val_metric_patches=16",
            "train.finetune_epochs=1"]
    args = ["-m", "mummi_ml", "train", "--data", str(data_file), "--out", str(out),
            "--init-from", str(parent), "--no-progress"]
    for s in sets:
        args += ["--set", s]
    run_mpi(2, args, timeout=240)
    meta = json.loads((out / "metric.json").read_text())
    assert meta["world_size"] == 2 and meta["parent"]["path"] == str(parent)
    assert is_complete(out)


def test_trained_model_carries_the_drift_reference_a_monitor_can_use(parent, data_file):
    from mummi_ml.metric import Metric
    from mummi_ml.patch import PatchFile
    from mummi_ml.selector.drift import DriftConfig, DriftMonitor

    metric = Metric.load(parent, device="cpu")
    mon = DriftMonitor.for_model(metric, DriftConfig(window=10, probe_size=4))
    assert mon is not None and mon.domain.tau > 0 and mon.domain.reference.shape[1] == 5
    with PatchFile(data_file) as f:
        batch = f[np.arange(20)]
    mon.update(metric.embed(batch.x), batch.classes, batch.ids, batch.x)
    rec = mon.close(mon.partial())
    assert rec.probe_n == 4 and 0 < rec.invariance_ratio < 2.0  # training patches: no event
