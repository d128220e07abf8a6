"""Data pipeline, training, checkpoints and resumption on one rank (CPU)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from mummi_ml.metric import (
    LossConfig,
    MetricError,
    ModelConfig,
    TrainConfig,
    TrainingData,
    epoch_order,
    load_checkpoint,
    split_indices,
    train_model,
)
from mummi_ml.patch import ChannelStats, PatchBatch, radial_profiles, read_patches, write_patches

REPO = Path(__file__).resolve().parents[1]


def make_patches(path: Path, n: int, seed: int = 0, replicas: int = 4) -> Path:
    """Random patches with labels of all four classes, written with the patch API."""
    rng = np.random.default_rng(seed)
    x = np.minimum(rng.gamma(2.0, 0.5, size=(n, 37, 37, 14)), 3.0).astype(np.float32)  # physical
    n_ras = rng.integers(0, 3, n)
    n_raf = np.minimum(n_ras, rng.integers(0, 2, n))
    y = np.stack([n_ras, n_raf], 1).astype(np.int32)
    batch = PatchBatch.from_arrays(x, y, ids=np.arange(n), replica=np.arange(n) % replicas)
    write_patches(path, batch)
    return path


def small_train(**kw) -> TrainConfig:
    base = dict(epochs=2, batch_size=16, num_threads=1, device="cpu", val_max_patches=32,
                val_metric_patches=16, seed=3)
    base.update(kw)
    return TrainConfig(**base)


@pytest.fixture(scope="module")
def data_file(tmp_path_factory) -> Path:
    return make_patches(tmp_path_factory.mktemp("data") / "patches.h5", 200)


def test_patch_split_is_seeded_disjoint_and_complete():
    a = split_indices(100, None, 0.1, "patch", seed=5)
    b = split_indices(100, None, 0.1, "patch", seed=5)
    np.testing.assert_array_equal(a.train, b.train)
    assert len(a.val) == 10 and not set(a.train) & set(a.val)
    assert sorted([*a.train, *a.val]) == list(range(100))


def test_replica_split_keeps_each_replica_on_one_side():
    replica = np.repeat(np.arange(10), 7)
    s = split_indices(70, replica, 0.2, "replica", seed=1)
    assert not set(replica[s.train]) & set(replica[s.val])
    assert len(set(replica[s.val])) == 2


def test_block_order_is_a_permutation_of_mostly_contiguous_blocks():
    order = epoch_order(1000, epoch=2, seed=0, shuffle="block", block=100, window=1000)
    assert sorted(order) == list(range(1000))
    assert not np.array_equal(order, epoch_order(1000, 3, 0, "block", 100, 1000))


def test_standardisation_comes_from_the_training_split_only(data_file, tmp_path):
    td = TrainingData([data_file], ModelConfig(), small_train(), tmp_path / "cache")
    x = read_patches(data_file).x
    expected = ChannelStats.from_batches([x[td.split.train]])
    np.testing.assert_allclose(td.stats.mean, expected.mean, rtol=1e-10)
    np.testing.assert_allclose(td.stats.std, expected.std, rtol=1e-10)
    assert not np.allclose(td.stats.mean, ChannelStats.from_batches([x]).mean, rtol=1e-10)


def test_upsilon_is_computed_once_and_cached(data_file, tmp_path):
    td = TrainingData([data_file], ModelConfig(), small_train(), tmp_path / "cache")
    x = read_patches(data_file).x
    np.testing.assert_allclose(
        td.upsilon, radial_profiles(td.stats.standardise(x), list(range(8))), rtol=1e-6
    )
    stamp = os.stat(td.upsilon_path).st_mtime_ns
    again = TrainingData([data_file], ModelConfig(), small_train(), tmp_path / "cache")
    assert os.stat(again.upsilon_path).st_mtime_ns == stamp


def test_streaming_from_hdf5_gives_the_same_batches_as_memory(data_file, tmp_path):
    mem = TrainingData([data_file], ModelConfig(), small_train(), tmp_path / "c")
    disk = TrainingData([data_file], ModelConfig(), small_train(cache_mb=0, stream_window=3),
                        tmp_path / "c")
    assert mem.in_memory and not disk.in_memory
    for a, b in zip(mem.batches(1, start_step=2), disk.batches(1, start_step=2), strict=True):
        assert a.step == b.step
        np.testing.assert_array_equal(a.x, b.x)
        np.testing.assert_array_equal(a.labels, b.labels)


def test_each_rank_gets_its_slice_of_the_same_global_batch(data_file, tmp_path):
    one = TrainingData([data_file], ModelConfig(), small_train(), tmp_path / "c")
    parts = [TrainingData([data_file], ModelConfig(), small_train(), tmp_path / "c", rank=r,
                          size=2) for r in range(2)]
    b1 = next(one.batches(0))
    b2 = [next(p.batches(0)) for p in parts]
    np.testing.assert_array_equal(np.concatenate([b.x for b in b2]), b1.x)
    np.testing.assert_array_equal(b2[1].labels, b1.labels)


def test_training_writes_log_curve_checkpoint_and_model(data_file, tmp_path):
    out = train_model(ModelConfig(), LossConfig(), small_train(epochs=1), [data_file],
                      tmp_path / "run", progress=False)
    for name in ("metric.json", "weights.pt", "checkpoint.pt", "train_log.csv",
                 "training_curve.png"):
        assert (out / name).is_file(), name
    header, row = (out / "train_log.csv").read_text().splitlines()[:2]
    assert "val_overlap_pct" in header and "train_inv" in header
    assert all(np.isfinite(float(v)) for v in row.split(","))


def test_resumed_two_plus_two_epochs_equal_four_epochs(data_file, tmp_path):
    cfgs = (ModelConfig(), LossConfig())
    train_model(*cfgs, small_train(epochs=4), [data_file], tmp_path / "a", progress=False)
    train_model(*cfgs, small_train(epochs=2), [data_file], tmp_path / "b", progress=False)
    assert load_checkpoint(tmp_path / "b" / "checkpoint.pt")["epoch"] == 2
    train_model(*cfgs, small_train(epochs=4), [data_file], tmp_path / "b", resume=True,
                progress=False)
    wa = torch.load(tmp_path / "a" / "weights.pt", weights_only=True)
    wb = torch.load(tmp_path / "b" / "weights.pt", weights_only=True)
    for k in wa:
        torch.testing.assert_close(wa[k], wb[k], rtol=0, atol=1e-6)
    log = (tmp_path / "b" / "train_log.csv").read_text().splitlines()
    assert len(log) == 1 + 4


def test_existing_checkpoint_without_resume_is_refused(data_file, tmp_path):
    train_model(ModelConfig(), LossConfig(), small_train(epochs=1), [data_file], tmp_path / "r",
                progress=False)
    with pytest.raises(MetricError, match="resume"):
        train_model(ModelConfig(), LossConfig(), small_train(epochs=2), [data_file],
                    tmp_path / "r", progress=False)


def test_resume_with_a_different_loss_is_refused(data_file, tmp_path):
    train_model(ModelConfig(), LossConfig(), small_train(epochs=1), [data_file], tmp_path / "r",
                progress=False)
    with pytest.raises(MetricError, match="loss.alpha_lab"):
        train_model(ModelConfig(), LossConfig(alpha_lab=4.0), small_train(epochs=2),
                    [data_file], tmp_path / "r", resume=True, progress=False)


def test_too_few_patches_for_one_batch_is_an_error(data_file, tmp_path):
    with pytest.raises(MetricError, match="fewer than one global batch"):
        train_model(ModelConfig(), LossConfig(), small_train(batch_size=512), [data_file],
                    tmp_path / "r", progress=False)


_INTERRUPTIBLE = r"""
import sys
from pathlib import Path
from mummi_ml.metric import *
tc = TrainConfig(epochs=50, batch_size=16, num_threads=1, device="cpu", val_max_patches=32,
                 val_metric_patches=16, seed=3)
try:
    train_model(ModelConfig(), LossConfig(), tc, [Path(sys.argv[1])], Path(sys.argv[2]),
                progress=False)
except TrainingInterrupted as exc:
    print("INTERRUPTED", exc.epoch, exc.step, flush=True)
    sys.exit(3)
"""


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGUSR1])
def test_signal_writes_a_checkpoint_and_exits_cleanly_then_resume_finishes(
    data_file, tmp_path, sig
):
    out = tmp_path / "run"
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    proc = subprocess.Popen([sys.executable, "-c", _INTERRUPTIBLE, str(data_file), str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.time() + 120
    while not (out / "checkpoint.pt").exists():  # first epoch done: training is under way
        assert proc.poll() is None and time.time() < deadline, proc.communicate()
        time.sleep(0.2)
    proc.send_signal(sig)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 3, stderr
    assert "INTERRUPTED" in stdout
    state = load_checkpoint(out / "checkpoint.pt")
    assert 1 <= state["epoch"] < 50
    train_model(ModelConfig(), LossConfig(), small_train(epochs=state["epoch"] + 1), [data_file],
                out, resume=True, progress=False)
    assert load_checkpoint(out / "checkpoint.pt")["epoch"] == state["epoch"] + 1
    assert (out / "metric.json").is_file()
