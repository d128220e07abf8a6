"""Under real ``mpiexec -n 3``: the reservoir and the drift statistics gathered from the ranks and
merged on rank 0 equal those of one process that saw every arrival."""

from __future__ import annotations

import numpy as np
import pytest

pytestmark = [pytest.mark.mpi, pytest.mark.slow]  # ~30 s: three interpreters start

_SCRIPT = r"""
import sys
import numpy as np
from mpi4py import MPI
from mummi_ml.metric.domain import summarise_embeddings
from mummi_ml.selector.drift import DriftConfig, DriftMonitor, WindowStats
from mummi_ml.selector.reservoir import Reservoir

comm = MPI.COMM_WORLD
rank, size = comm.Get_rank(), comm.Get_size()
rng = np.random.default_rng(0)
n = 3000
ids = rng.choice(10**12, n, replace=False).astype(np.uint64)
cls = rng.choice(4, n, p=[0.6, 0.25, 0.1, 0.05])
z = rng.normal(size=(n, 3)) + 0.7
loc = np.stack([np.full(n, rank), np.arange(n), np.zeros(n)], 1).astype(np.int64)
dom = summarise_embeddings(np.random.default_rng(1).normal(size=(800, 3)), "v",
                           np.random.default_rng(2).integers(0, 4, 800))
mine = np.random.default_rng(3).permutation(n)[rank::size]   # this rank's arrivals
res = Reservoir(4, 40)
mon = DriftMonitor(dom, DriftConfig(window=n, probe_size=0), "v")
for part in np.array_split(mine, 4):
    res.offer(ids[part], cls[part], loc[part])
    mon.update(z[part], cls[part], ids[part])
states = comm.gather((res.to_state(), mon.partial().to_state()), root=0)
if rank == 0:
    merged = Reservoir.merge([Reservoir.from_state(r) for r, _ in states])
    stats = WindowStats.merge([WindowStats.from_state(d) for _, d in states], 0)
    rec = mon.close(stats, now=0.0)
    np.savez(sys.argv[1], ids=merged.ids, seen=merged.seen, hist=stats.hist,
             far=stats.far, median=rec.median_ratio)
"""


def test_three_ranks_merge_to_the_one_process_reservoir_and_drift(run_mpi, tmp_path):
    from mummi_ml.metric.domain import summarise_embeddings
    from mummi_ml.selector.drift import DriftConfig, DriftMonitor
    from mummi_ml.selector.reservoir import Reservoir

    run_mpi(3, ["-c", _SCRIPT, str(tmp_path / "out.npz")], timeout=120)
    got = np.load(tmp_path / "out.npz")
    rng = np.random.default_rng(0)
    n = 3000
    ids = rng.choice(10**12, n, replace=False).astype(np.uint64)
    cls = rng.choice(4, n, p=[0.6, 0.25, 0.1, 0.05])
    z = rng.normal(size=(n, 3)) + 0.7
    one = Reservoir(4, 40)
    one.offer(ids, cls, np.zeros((n, 3)))
    dom = summarise_embeddings(np.random.default_rng(1).normal(size=(800, 3)), "v",
                               np.random.default_rng(2).integers(0, 4, 800))
    mon = DriftMonitor(dom, DriftConfig(window=n, probe_size=0), "v")
    mon.update(z, cls, ids)
    stats = mon.partial()
    np.testing.assert_array_equal(got["ids"], one.ids)
    np.testing.assert_array_equal(got["seen"], one.seen)
    np.testing.assert_array_equal(got["hist"], stats.hist)
    assert int(got["far"]) == stats.far
    assert float(got["median"]) == mon.close(stats).median_ratio
