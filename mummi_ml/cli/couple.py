"""``mummi-ml couple``: stream patches from the continuum model as they are produced.

``--spool DIR``: one HDF5 file per batch, written as ``NAME.h5.tmp`` and renamed to ``NAME.h5``
(readers claim only ``*.h5``); under ``mpiexec -n R`` each rank is its own replica.
``--mpi``: MPMD launch with the selector (``mpiexec -n A mummi-ml couple --mpi ... : -n B
mummi-ml select ...``); coupler rank i sends to selector ``i % B``, then END to every selector
(protocol in :mod:`mummi_ml.continuum.coupler_mpi` and docs/continuum.md).
"""

from __future__ import annotations

import argparse
import math
import os
import sys

MIN_RATE = 1e-6  # patches/s: one patch per 11.6 days; slower is a typo, not a throttle
HELP = "stream patches from the continuum model to a spool directory or to selector ranks (MPI)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sink = parser.add_mutually_exclusive_group(required=True)
    sink.add_argument("--spool", metavar="DIR", help="write atomic HDF5 batch files into DIR")
    sink.add_argument("--mpi", action="store_true", help="send to selector ranks (MPMD launch)")
    parser.add_argument(
        "--preset",
        choices=["pre-campaign", "campaign"],
        default=None,
        help="parameter preset (default: continuum.preset of the config)",
    )
    parser.add_argument(
        "--patches", type=int, default=1000, help="patches to produce, over all coupler ranks"
    )
    parser.add_argument("--batch-size", type=int, default=64, help="patches per message/file")
    parser.add_argument(
        "--rate", type=float, default=None, help="throttle to this many patches/s per rank"
    )
    parser.add_argument(
        "--replica-offset", type=int, default=0, help="replica id of coupler rank 0 (default 0)"
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from mummi_ml.cli._common import config_from_args
    from mummi_ml.continuum.coupler import MPISink, SpoolSink, stream_patches
    from mummi_ml.continuum.params import ContinuumError
    from mummi_ml.continuum.replicas import split_count, world_comm

    cfg = config_from_args(args).continuum
    if args.patches < 0:
        raise ContinuumError(f"--patches: expected >= 0, got {args.patches}")
    if args.batch_size < 1:
        raise ContinuumError(f"--batch-size: expected >= 1, got {args.batch_size}")
    if args.rate is not None and not (math.isfinite(args.rate) and args.rate >= MIN_RATE):
        raise ContinuumError(f"--rate: expected a finite rate >= {MIN_RATE} patches/s, "
                             f"got {args.rate}")
    if args.replica_offset < 0:
        raise ContinuumError(f"--replica-offset: expected >= 0, got {args.replica_offset}")
    preset = args.preset or cfg.preset
    if args.mpi:
        from mummi_ml.continuum.coupler_mpi import split_mpmd

        layout = split_mpmd("coupler")
        rank, size = layout.local_rank, layout.local_size
        sink = MPISink(layout)
        where = f"selector rank {sink.dest}"
    else:
        comm = world_comm()
        rank, size = (comm.Get_rank(), comm.Get_size()) if comm is not None else (0, 1)
        attrs = {"created_by_command": "mummi-ml couple", "preset": preset, "seed": cfg.seed}
        sink = SpoolSink(args.spool, attrs=attrs)
        where = str(args.spool)
    replica = args.replica_offset + rank
    n_local = split_count(args.patches, rank, size)
    quiet = not sys.stderr.isatty() or os.environ.get("CI", "").lower() in ("1", "true")
    bar = tqdm(total=n_local, desc=f"couple r{replica}", unit="patch",
               disable=quiet or args.no_progress or rank != 0)
    try:
        n_batches = stream_patches(
            cfg, n_local, sink, preset=preset, replica=replica, batch_size=args.batch_size,
            rate=args.rate, progress=bar.update,
        )
    finally:
        bar.close()
        sink.close()  # MPI: END to every selector, also after an error, so none waits forever
    print(f"coupler rank {rank}: sent {n_local} patches in {n_batches} batches to {where}",
          file=sys.stderr)
    return 0
