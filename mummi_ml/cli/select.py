"""``mummi-ml select``: run the in situ selector service (mpiexec/srun/flux for many ranks)."""

from __future__ import annotations

import argparse
import logging
import sys

from mummi_ml.cli._common import config_from_args

HELP = "run the in situ selector: ingest patches, pick the most novel, emit MD jobs"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--once", action="store_true",
                        help="ingest what is there, fill the free MD slots, wait for jobs, exit")
    parser.add_argument("--state-dir", default=None, help="override selector.state_dir")
    parser.add_argument("--spool", default=None, help="override selector.spool_dir")
    parser.add_argument("--mpmd", action="store_true",
                        help="MPMD launch with `mummi-ml couple --mpi`: receive patches over MPI")
    parser.add_argument("--weights", default=None, metavar="FILE.json",
                        help="after the run, write importance weights of the selected patches")


def run(args: argparse.Namespace) -> int:
    cfg = config_from_args(args)
    if args.state_dir:
        cfg.selector.state_dir = args.state_dir
    if args.spool:
        cfg.selector.spool_dir = args.spool
    from mummi_ml.selector.runner import run_service

    logging.basicConfig(level=logging.DEBUG if args.debug else logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    return run_service(cfg, once=args.once, mpmd=args.mpmd, weights_path=args.weights)
