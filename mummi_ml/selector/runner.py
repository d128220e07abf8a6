"""Start the selector service in a process: communicator, MPMD split, signals, weights."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from mummi_ml.durable import write_json_atomic
from mummi_ml.errors import MummiMLError
from mummi_ml.selector.collectives import rank_size
from mummi_ml.selector.errors import SelectorError
from mummi_ml.selector.source import open_sources

__all__ = ["run_service", "selector_comm"]

log = logging.getLogger("mummi_ml.selector")


def selector_comm(mpmd: bool = False) -> tuple[Any, Any]:
    """``(comm of the selector ranks or None, MPMD layout or None)``."""
    from mpi4py import MPI

    if mpmd:
        from mummi_ml.patch.stream import split_mpmd

        layout = split_mpmd("selector")
        return (layout.local if layout.local.Get_size() > 1 else None), layout
    world = MPI.COMM_WORLD
    from mummi_ml.parallel.launcher import detect_launch

    launched = detect_launch().size
    if launched != world.Get_size():
        raise SelectorError(
            f"the launcher started {launched} tasks but MPI sees {world.Get_size()}: mpi4py is "
            "not built for this launcher's process manager (each task would run alone and "
            "they would overwrite one state directory); use the matching mpiexec, or srun "
            "--mpi=pmi2/pmix with an MPI built for it"
        )
    return (world if world.Get_size() > 1 else None), None


def run_service(cfg: Any, once: bool = False, mpmd: bool = False,
                weights_path: str | None = None) -> int:
    """Run :class:`SelectorService` until stopped; returns the exit status."""
    from mummi_ml.selector.importance import importance_weights
    from mummi_ml.selector.service import SelectorService

    if mpmd and "mpi" not in cfg.selector.sources:
        cfg.selector.sources = [*cfg.selector.sources, "mpi"]
    comm, layout = selector_comm(mpmd)
    try:
        rank, size = rank_size(comm)
        sources = open_sources(cfg.selector, rank, size, layout)
        svc = SelectorService(cfg, comm=comm, sources=sources)
        svc.install_signal_handlers()
        rc = svc.run(once=once)
    except Exception as exc:
        if comm is not None:  # a failure on one rank would leave the others waiting forever
            if isinstance(exc, MummiMLError):
                log.error("selector rank %d: %s; aborting all ranks", comm.Get_rank(), exc)
                comm.Abort(2)
            log.exception("selector rank %d failed; aborting all ranks", comm.Get_rank())
            comm.Abort(1)
        raise
    if weights_path:
        w = importance_weights(svc.pool.z, svc.selected.z, comm)
        if svc.rank == 0:
            p = Path(weights_path)
            write_json_atomic(p, {"ids": [int(i) for i in svc.selected.ids],
                                  "weights": w.tolist()}, fsync=False, indent=None)
    return rc
