"""torch.distributed under real ``mpiexec -n 2``: rendezvous over MPI, gloo, and the
differentiable collectives (gather, synchronised BatchNorm) against one process."""

from __future__ import annotations

import json

import pytest

pytestmark = pytest.mark.mpi

_SCRIPT = r"""
import json, sys, torch
from pathlib import Path
from mummi_ml.parallel import init_distributed, all_gather_with_grad
from mummi_ml.metric.batchnorm import GlobalBatchNorm
ctx = init_distributed("cpu", 1)
torch.manual_seed(0)
X = torch.randn(8, 3, 5, 5, dtype=torch.float64)
W = torch.randn(8, 3, 5, 5, dtype=torch.float64)
bn = GlobalBatchNorm(3).double()
n = 8 // ctx.size
x = X[ctx.rank * n:(ctx.rank + 1) * n].clone().requires_grad_(True)
y = all_gather_with_grad(bn(x).reshape(n, -1)).reshape(8, 3, 5, 5)
loss = ((y * W) ** 2).sum()
loss.backward()
# what DistributedDataParallel does to parameter gradients: average over ranks
g_w = bn.weight.grad.clone()
if ctx.distributed:
    torch.distributed.all_reduce(g_w)
    g_w /= ctx.size
g_x = all_gather_with_grad(x.grad) / ctx.size
# one file per rank: long lines of two ranks interleave on mpiexec's merged stdout
(Path(sys.argv[1]) / f"rank{ctx.rank}.json").write_text(json.dumps(
    {"rank": ctx.rank, "size": ctx.size, "backend": ctx.backend, "loss": loss.item(),
     "g_w": g_w.tolist(), "g_x": g_x.flatten().tolist(),
     "running_var": bn.running_var.tolist()}))
ctx.close()
"""


def _results(run_mpi, n: int, out) -> list[dict]:
    out.mkdir()
    run_mpi(n, ["-c", _SCRIPT, str(out)], timeout=120)
    return [json.loads(p.read_text()) for p in sorted(out.glob("rank*.json"))]


def test_two_ranks_join_a_gloo_group_found_over_mpi(run_mpi, tmp_path):
    res = _results(run_mpi, 2, tmp_path / "two")
    assert sorted(r["rank"] for r in res) == [0, 1]
    assert all(r["size"] == 2 and r["backend"] == "gloo" for r in res)


def test_gathered_loss_and_synced_batchnorm_match_one_process(run_mpi, tmp_path):
    two = _results(run_mpi, 2, tmp_path / "two")
    one = _results(run_mpi, 1, tmp_path / "one")[0]
    assert one["backend"] == "none"
    for r in two:
        assert r["loss"] == pytest.approx(one["loss"], rel=1e-12)
        assert r["g_w"] == pytest.approx(one["g_w"], rel=1e-10)
        assert r["g_x"] == pytest.approx(one["g_x"], rel=1e-10, abs=1e-12)
        assert r["running_var"] == pytest.approx(one["running_var"], rel=1e-12)
