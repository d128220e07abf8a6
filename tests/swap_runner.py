"""Worker for tests/test_selector_swap.py under ``mpiexec -n R``: a selector service ingests the
spool, picks, sees a new model published in ``model_updates_dir``, swaps, picks again; rank 0
writes what it saw (JSON) for the test to compare with a fresh selector on the new model.

Usage: ``python -m tests.swap_runner CONFIG.yaml OUT.json NEW_MODEL_DIR K_BEFORE K_AFTER``
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
from mpi4py import MPI

from mummi_ml.config import load_config
from mummi_ml.metric.model_dir import COMPLETE_MARKER
from mummi_ml.selector import SelectorService
from mummi_ml.selector.collectives import allgather_rows


def publish(model: Path, updates: Path, name: str) -> Path:
    """Copy a model directory into ``updates/name`` with its COMPLETE marker written last."""
    out = updates / name
    shutil.copytree(model, out, ignore=shutil.ignore_patterns(COMPLETE_MARKER))
    shutil.copy(model / COMPLETE_MARKER, out / COMPLETE_MARKER)
    return out


def main(cfg_path: str, out: str, new_model: str, k_before: int, k_after: int) -> None:
    comm = MPI.COMM_WORLD
    cfg = load_config(cfg_path)
    svc = SelectorService(cfg, comm=comm)
    svc.step(once=True)  # ingest every spool file (no model published yet)
    svc.select(k_before)
    comm.Barrier()
    if comm.Get_rank() == 0:
        publish(Path(new_model), Path(cfg.selector.model_updates_dir), "retrained")
    comm.Barrier()
    svc.step(once=True)  # rank 0 sees the model; every rank swaps
    pool_ids, _ = allgather_rows(comm, svc.pool.ids)
    selected_ids = svc.selected.ids.tolist()
    dims = comm.allgather([svc.pool.dim, svc.selected.dim, svc.state.meta.model_version])
    svc.select(k_after)
    if comm.Get_rank() == 0:
        Path(out).write_text(json.dumps({
            "pool_ids": np.sort(pool_ids).tolist(), "selected_ids": selected_ids,
            "after": svc.selected.ids[len(selected_ids):].tolist(),
            "after_novelty": svc.selected.novelty[len(selected_ids):].tolist(), "dims": dims,
        }))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]))
