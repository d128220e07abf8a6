"""Replicas under mpiexec (one shard per rank) and the MPMD coupler -> selector protocol."""

from __future__ import annotations

import json
import sys
import textwrap

import numpy as np
import pytest

from mummi_ml.continuum import ContinuumConfig, PatchSimulation, shard_path, shard_paths
from mummi_ml.continuum.coupler_mpi import batch_to_buffers, buffers_to_batch
from mummi_ml.patch import PatchDataset

SMALL = [
    "--set", "continuum.domain_pixels=48",
    "--set", "continuum.n_ras=4",
    "--set", "continuum.equilibration_us=0.1",
    "--set", "continuum.control_patches_per_frame=1",
]

RECEIVER = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    from mummi_ml.continuum.coupler_mpi import recv_batch, split_mpmd
    from mummi_ml.patch import validate_batch

    layout = split_mpmd("selector")
    ends, n, ids, sources, replicas = 0, 0, [], set(), set()
    while ends < layout.n_ends_expected:
        source, batch = recv_batch(layout.world)
        if batch is None:
            ends += 1
            continue
        validate_batch(batch.x, batch.y)
        n += len(batch)
        ids += batch.ids.tolist()
        sources.add(source)
        replicas.update(batch.replica.tolist())
    result = {"world_rank": layout.world_rank, "n": n, "ids": ids, "ends": ends,
              "sources": sorted(sources), "replicas": sorted(replicas),
              "coupler_ranks": list(layout.coupler_ranks),
              "selector_ranks": list(layout.selector_ranks)}
    with open(f"{sys.argv[1]}/selector{layout.local_rank}.json", "w") as f:
        json.dump(result, f)
    """
)


def test_shard_names_follow_the_rank():
    assert shard_path("run/pre.h5", 0, 1).as_posix() == "run/pre.h5"
    assert [p.name for p in shard_paths("run/pre.h5", 2)] == ["pre.rank0.h5", "pre.rank1.h5"]


def test_wire_buffers_round_trip_a_batch_without_pickle():
    batch = next(PatchSimulation(ContinuumConfig(domain_pixels=48, n_ras=3), replica=5).frames())
    header, x, meta = batch_to_buffers(batch, batch_seq=9)
    assert header.dtype == np.int64 and header.tolist()[:7] == [len(batch), 1, 37, 37, 14, 5, 9]
    assert meta.dtype == np.uint8 and len(meta) == 44 * len(batch)
    back = buffers_to_batch(x.copy(), meta.copy())
    for name in ("x", "y", "ids", "replica", "time_us", "centre_nm", "protein_id"):
        got, want = getattr(back, name), getattr(batch, name)
        assert got.dtype == want.dtype
        np.testing.assert_array_equal(got, want)


@pytest.mark.mpi
def test_simulate_under_mpiexec_writes_one_replica_shard_per_rank(run_mpi, tmp_path):
    out = tmp_path / "pre.h5"
    run_mpi(2, ["-m", "mummi_ml", "simulate", "--out", str(out), "--patches", "25",
                "--no-progress", *SMALL], timeout=240)
    shards = shard_paths(out, 2)
    assert all(p.exists() for p in shards) and not out.exists()
    with PatchDataset(shards) as ds:
        assert len(ds) == 25
        assert len(np.unique(ds.field("ids"))) == 25
        assert sorted(np.unique(ds.field("replica")).tolist()) == [0, 1]


@pytest.mark.mpi
def test_mpmd_couplers_stream_every_patch_to_their_selectors(run_mpi, tmp_path):
    receiver = tmp_path / "receiver.py"
    receiver.write_text(RECEIVER)
    couple = ["-m", "mummi_ml", "couple", "--mpi", "--patches", "30", "--batch-size", "7",
              "--no-progress", *SMALL]
    run_mpi(2, [*couple, ":", "-n", "2", sys.executable, str(receiver), str(tmp_path)],
            timeout=240)
    results = [json.loads((tmp_path / f"selector{i}.json").read_text()) for i in range(2)]
    ids = [i for r in results for i in r["ids"]]
    assert sum(r["n"] for r in results) == 30
    assert len(set(ids)) == 30
    assert all(r["ends"] == 2 for r in results)  # END from every coupler rank
    assert results[0]["coupler_ranks"] == [0, 1] and results[0]["selector_ranks"] == [2, 3]
    # coupler local rank i sends to selector i % 2
    assert results[0]["sources"] == [0] and results[1]["sources"] == [1]
    assert results[0]["replicas"] == [0] and results[1]["replicas"] == [1]
