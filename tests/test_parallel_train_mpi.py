"""Data-parallel training under real ``mpiexec -n 2`` (gloo, CPU) against one process."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from mummi_ml.metric import LossConfig, ModelConfig, TrainConfig, train_model
from mummi_ml.patch import PatchBatch, write_patches

pytestmark = pytest.mark.mpi

CONFIG = dict(batch_size=16, precision="float64", num_threads=1, device="cpu",
              val_max_patches=16, val_metric_patches=8, seed=11)

_TRAIN_TEMPLATE = r"""
import sys, torch
from pathlib import Path
from mummi_ml.metric import *
CONFIG = %r
from mummi_ml.parallel import init_distributed
data, out = Path(sys.argv[1]), Path(sys.argv[2])
epochs, resume = int(sys.argv[3]), sys.argv[4] == "1"
ctx = init_distributed("cpu", 1)
tc = TrainConfig(**{**CONFIG, "epochs": epochs})
tr = Trainer(ModelConfig(), LossConfig(), tc, [data], out, ctx, progress=False)
tr.run(resume)
torch.save(tr.encoder.state_dict(), out / f"rank{ctx.rank}-of-{ctx.size}.pt")
ctx.close()
"""


_TRAIN = _TRAIN_TEMPLATE % (CONFIG,)


@pytest.fixture(scope="module")
def data_file(tmp_path_factory) -> Path:
    rng = np.random.default_rng(2)
    n = 120
    x = np.minimum(rng.gamma(2.0, 0.5, size=(n, 37, 37, 14)), 3.0).astype(np.float32)  # physical
    n_ras = rng.integers(0, 3, n)
    y = np.stack([n_ras, np.minimum(n_ras, rng.integers(0, 2, n))], 1).astype(np.int32)
    path = tmp_path_factory.mktemp("data") / "patches.h5"
    write_patches(path, PatchBatch.from_arrays(x, y, ids=np.arange(n)))
    return path


@pytest.fixture(scope="module")
def reference(data_file, tmp_path_factory) -> dict[str, torch.Tensor]:
    """Weights of ONE process (this one) trained 2 epochs on the same global batches."""
    out = tmp_path_factory.mktemp("one")
    cfg = TrainConfig(**{**CONFIG, "epochs": 2})
    train_model(ModelConfig(), LossConfig(), cfg, [data_file], out, progress=False)
    return _weights(out / "weights.pt")


def _weights(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, weights_only=True)


def _assert_same(a: dict, b: dict, atol: float) -> None:
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k].double(), b[k].double(), rtol=0, atol=atol, msg=k)


def test_two_ranks_hold_identical_parameters_equal_to_one_process(
    run_mpi, data_file, tmp_path, reference
):
    # 108 training patches, global batch 16: 6 steps per epoch, 2 epochs = 12 Adam steps
    run_mpi(2, ["-c", _TRAIN, str(data_file), str(tmp_path), "2", "0"], timeout=240)
    _assert_same(_weights(tmp_path / "rank0-of-2.pt"), _weights(tmp_path / "rank1-of-2.pt"), 0.0)
    _assert_same(_weights(tmp_path / "weights.pt"), reference, atol=1e-5)


def test_checkpoint_and_resume_under_two_ranks_equal_one_uninterrupted_process(
    run_mpi, data_file, tmp_path, reference
):
    run_mpi(2, ["-c", _TRAIN, str(data_file), str(tmp_path), "1", "0"], timeout=240)
    run_mpi(2, ["-c", _TRAIN, str(data_file), str(tmp_path), "2", "1"], timeout=240)
    _assert_same(_weights(tmp_path / "rank1-of-2.pt"), _weights(tmp_path / "rank0-of-2.pt"), 0.0)
    _assert_same(_weights(tmp_path / "weights.pt"), reference, atol=1e-5)


_INTERRUPTIBLE = r"""
import os, sys
from pathlib import Path
from mummi_ml.metric import *
from mummi_ml.parallel import init_distributed
data, out = Path(sys.argv[1]), Path(sys.argv[2])
ctx = init_distributed("cpu", 1)
(out.parent / f"pid{ctx.rank}").write_text(str(os.getpid()))
tc = TrainConfig(epochs=50, batch_size=16, val_max_patches=16, val_metric_patches=8)
try:
    train_model(ModelConfig(), LossConfig(), tc, [data], out, progress=False, ctx=ctx)
except TrainingInterrupted as exc:
    sys.stdout.write(f"INTERRUPTED {ctx.rank} {exc.epoch} {exc.step}\n")  # one write per line
    ctx.close()
    sys.exit(3)
"""


@pytest.mark.slow
def test_a_signal_to_one_rank_stops_every_rank_at_the_same_step(data_file, tmp_path):
    import os
    import signal
    import subprocess
    import time

    out = tmp_path / "run"
    repo = Path(__file__).resolve().parents[1]
    env = dict(os.environ, PYTHONPATH=str(repo), OMP_NUM_THREADS="1")
    mpiexec = Path(sys.executable).parent / "mpiexec"
    cmd = [str(mpiexec) if mpiexec.exists() else "mpiexec", "-n", "2", sys.executable, "-c",
           _INTERRUPTIBLE, str(data_file), str(out)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env)
    deadline = time.time() + 180
    while not (out / "checkpoint.pt").exists():
        assert proc.poll() is None and time.time() < deadline, proc.communicate()
        time.sleep(0.2)
    os.kill(int((tmp_path / "pid1").read_text()), signal.SIGUSR1)  # rank 1 only
    stdout, stderr = proc.communicate(timeout=180)
    assert proc.returncode == 3, stderr[-2000:]
    stops = sorted(line.split()[1:] for line in stdout.splitlines() if "INTERRUPTED" in line)
    assert [s[0] for s in stops] == ["0", "1"]
    assert stops[0][1:] == stops[1][1:]  # same epoch and step on both ranks
