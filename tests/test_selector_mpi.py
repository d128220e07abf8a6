"""Distributed selection under ``mpiexec -n R`` picks exactly what the single-process reference
picks on the union of the candidates (R = 1, 2, 3), over several rounds with arrivals between
them, and with ties across ranks.

Run as a script (``python tests/test_selector_mpi.py OUT.json SEED KK TIES``) it is the MPI
worker the tests launch.
"""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest

N, D, ROUNDS, PER_ROUND = 3000, 6, 3, (20, 1, 12)


def _scenario(seed: int, size: int, ties: bool):
    """The same data on every rank: embeddings, ids, classes, arrival round and owner rank."""
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(N, D)).astype(np.float32)
    if ties:  # many exact duplicates, spread over ranks
        z[N // 2 :] = z[: N - N // 2]
    ids = rng.permutation(50 * N)[:N].astype(np.uint64)
    cls = rng.integers(0, 4, N).astype(np.int8)
    arrival = rng.integers(0, ROUNDS, N)
    owner = rng.integers(0, size, N)
    return z, ids, cls, arrival, owner


def _worker(out: str, seed: int, kk: int, ties: bool) -> None:
    from mpi4py import MPI

    from mummi_ml.selector import CandidatePool, LazyGreedy, NearestSelected, SelectedSet

    comm = MPI.COMM_WORLD
    rank, size = comm.Get_rank(), comm.Get_size()
    z, ids, cls, arrival, owner = _scenario(seed, size, ties)
    pool, sel = CandidatePool(D, kk), SelectedSet(D)
    engine = LazyGreedy(pool, sel, comm, frontier_size=8)
    nn = NearestSelected(kk, "ckdtree", brute_max=8)
    picks = []
    for r in range(ROUNDS):
        mine = np.flatnonzero((arrival == r) & (owner == rank))
        pool.add(z[mine], nn.query(z[mine], sel.z), ids=ids[mine], classes=cls[mine],
                 seen=np.full(len(mine), len(sel)), src=rank, seg=r, row=mine)
        picks += engine.select(PER_ROUND[r])
    if rank == 0:
        with open(out, "w") as fh:
            json.dump({"ids": [p.id for p in picks], "novelty": [p.novelty for p in picks],
                       "owners": [p.owner for p in picks],
                       "sel_ids": [int(i) for i in sel.ids]}, fh)


def _reference(seed: int, kk: int, ties: bool) -> tuple[list[int], list[float]]:
    from mummi_ml.selector import reference_select

    z, ids, cls, arrival, _ = _scenario(seed, 1, ties)
    picked: list[int] = []
    nov: list[float] = []
    for r in range(ROUNDS):
        avail = np.flatnonzero((arrival <= r) & ~np.isin(np.arange(N), picked))
        pos, nv = reference_select(z[avail], ids[avail], PER_ROUND[r],
                                   selected_z=z[picked] if picked else None, knn_k=kk)
        picked += avail[pos].tolist()
        nov += nv.tolist()
    return ids[picked].tolist(), nov


@pytest.mark.mpi
@pytest.mark.parametrize("ranks", [1, 2, 3])
def test_distributed_picks_equal_reference(run_mpi, tmp_path, ranks):
    out = tmp_path / "picks.json"
    run_mpi(ranks, [__file__, str(out), "7", "1", "0"], timeout=180)
    got = json.loads(out.read_text())
    want_ids, want_nov = _reference(7, 1, False)
    assert got["ids"] == want_ids
    assert got["novelty"] == want_nov
    assert got["sel_ids"] == want_ids
    if ranks > 1:
        assert len(set(got["owners"])) > 1  # picks really came from several ranks


@pytest.mark.mpi
def test_distributed_ties_across_ranks_go_to_smallest_id(run_mpi, tmp_path):
    out = tmp_path / "picks.json"
    run_mpi(3, [__file__, str(out), "11", "1", "1"], timeout=180)
    assert json.loads(out.read_text())["ids"] == _reference(11, 1, True)[0]


@pytest.mark.mpi
def test_distributed_mean_knn_novelty_equals_reference(run_mpi, tmp_path):
    out = tmp_path / "picks.json"
    run_mpi(2, [__file__, str(out), "5", "4", "0"], timeout=180)
    got = json.loads(out.read_text())
    want_ids, want_nov = _reference(5, 4, False)
    assert got["ids"] == want_ids and got["novelty"] == want_nov


if __name__ == "__main__":
    _worker(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4] == "1")


@pytest.mark.mpi
def test_mpmd_coupler_ranks_feed_selector_ranks(tmp_path):
    """``mpiexec -n 2 mummi-ml couple --mpi : -n 2 mummi-ml select --mpmd --once``: every patch
    the couplers send is pooled or selected, and the selector exits after their ENDs."""
    import os
    import subprocess
    from pathlib import Path

    import yaml

    from mummi_ml.selector import latest_checkpoint, load_rank_state, load_selected

    mpiexec = Path(sys.executable).parent / "mpiexec"
    if not mpiexec.exists():
        pytest.skip("mpiexec not found next to this Python")
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(yaml.safe_dump({
        "selector": {"state_dir": str(tmp_path / "state"), "sources": ["mpi"],
                     "embedding": "mean_concentrations", "poll_interval_s": 0.05},
        "jobs": {"slots": 3, "command": ["{python}", "-c", "pass"], "poll_interval_s": 0.1},
    }))
    repo = Path(__file__).resolve().parents[1]
    env = dict(os.environ, OMP_NUM_THREADS="1",
               PYTHONPATH=str(repo) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    py = [sys.executable, "-m", "mummi_ml"]
    cmd = [str(mpiexec), "-n", "2", *py, "couple", "--mpi", "--patches", "120", "--batch-size",
           "20", "--no-progress", "--config", str(cfg), ":", "-n", "2", *py, "select", "--mpmd",
           "--once", "--config", str(cfg)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=240, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ckpt, man = latest_checkpoint(tmp_path / "state")
    assert man["n_ranks"] == 2
    pooled = load_rank_state(ckpt, man, 0, 1).pool["ids"]
    sel, _ = load_selected(ckpt)
    assert len(pooled) + len(sel["ids"]) == 120 and len(sel["ids"]) == 3
    assert len(set(pooled.tolist()) | set(sel["ids"].tolist())) == 120


@pytest.mark.mpi
def test_service_restart_on_another_rank_count_continues_the_reference(run_mpi, tmp_path):
    """``select --once`` on 2 ranks, new spool files, ``select --once`` on 3 ranks: the picks are
    those of the reference over both rounds (the pools were redistributed in between)."""
    import yaml

    from mummi_ml.patch import PatchBatch, mean_concentrations, write_patches
    from mummi_ml.selector import reference_select

    rng = np.random.default_rng(8)
    spool = tmp_path / "spool"
    spool.mkdir()
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(yaml.safe_dump({
        "selector": {"state_dir": str(tmp_path / "state"), "spool_dir": str(spool),
                     "embedding": "mean_concentrations", "poll_interval_s": 0.05,
                     "files_per_poll": 1},
        "jobs": {"slots": 4, "command": ["{python}", "-c", "pass"], "poll_interval_s": 0.1},
    }))
    batches = []
    for i in range(8):
        x = rng.random((25, 37, 37, 14), dtype=np.float32)
        b = PatchBatch.from_arrays(x, np.zeros((25, 2), np.int32),
                                   ids=np.arange(25 * i, 25 * i + 25, dtype=np.uint64))
        batches.append(b)
    for i in range(4):
        write_patches(spool / f"a{i}.h5", batches[i])
    args = ["-m", "mummi_ml", "select", "--config", str(cfg), "--once", "--weights",
            str(tmp_path / "w.json")]
    run_mpi(2, args, timeout=240)
    for i in range(4, 8):
        write_patches(spool / f"b{i}.h5", batches[i])
    run_mpi(3, args, timeout=240)
    z = mean_concentrations(np.concatenate([b.x for b in batches]))
    ids = np.concatenate([b.ids for b in batches])
    p1, _ = reference_select(z[:100], ids[:100], 4)
    rest = np.setdiff1d(np.arange(200), p1)
    p2, _ = reference_select(z[rest], ids[rest], 4, selected_z=z[p1])
    w = json.loads((tmp_path / "w.json").read_text())
    assert w["ids"] == ids[p1].tolist() + ids[rest][p2].tolist()
    assert sum(w["weights"]) == 200  # 8 selected + 192 unselected candidates
