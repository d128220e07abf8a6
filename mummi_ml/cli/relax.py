"""``mummi-ml relax JOB_DIR``: the default MD stand-in of a selected patch's job.

Reads ``JOB_DIR/patch.h5`` (written by the job emitter), evolves every patch in it for
``--duration-us`` (default ``jobs.duration_us``) with the continuum lipid dynamics
(:func:`mummi_ml.continuum.relax_patch`, proteins held fixed) and writes ``JOB_DIR/result.h5``
atomically (temp file, then rename), with the same ids and metadata and ``time_us`` advanced by
the duration. Exit status 0 on success; 2 with a one-line error for a missing or corrupt patch.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

HELP = "MD stand-in: evolve JOB_DIR/patch.h5 with the continuum dynamics, write JOB_DIR/result.h5"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("job_dir", metavar="JOB_DIR", help="job directory holding patch.h5")
    parser.add_argument(
        "--duration-us",
        type=float,
        default=None,
        help="simulated time in microseconds (default: jobs.duration_us)",
    )
    parser.add_argument(
        "--seed",
        type=int,
        default=None,
        help="noise seed (default: jobs.relax_seed, else patch id)",
    )
    parser.add_argument("--input", default="patch.h5", help="patch file name in JOB_DIR")
    parser.add_argument("--output", default="result.h5", help="result file name in JOB_DIR")


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from mummi_ml.cli._common import config_from_args
    from mummi_ml.continuum import relax_patch
    from mummi_ml.errors import MummiMLError, PatchFileError
    from mummi_ml.patch import PatchBatch, read_patches, write_patches

    cfg = config_from_args(args)
    job_dir = Path(args.job_dir)
    duration = cfg.jobs.duration_us if args.duration_us is None else args.duration_us
    if not (math.isfinite(duration) and duration >= 0):
        raise MummiMLError(f"--duration-us: expected a finite time >= 0 (us), got {duration}")
    if args.seed is not None and not 0 <= args.seed < 2**62:
        raise MummiMLError(f"--seed: expected 0 <= seed < 2**62, got {args.seed}")
    for name in (args.input, args.output):
        if Path(name).name != name:
            raise MummiMLError(f"--input/--output: expected a file name in JOB_DIR, got {name!r}")
    src = job_dir / args.input
    if not job_dir.is_dir():
        raise MummiMLError(f"{job_dir}: job directory not found")
    if not src.is_file():
        raise MummiMLError(f"{src}: patch file not found (expected the patch of an MD job)")
    try:
        batch = read_patches(src)
    except PatchFileError as exc:
        raise MummiMLError(f"{src}: cannot read patches: {str(exc).splitlines()[0]}") from None
    except OSError as exc:  # h5py raises OSError for files that are not HDF5
        raise MummiMLError(f"{src}: not a readable patch file ({exc})") from None
    if len(batch) == 0:
        raise MummiMLError(f"{src}: expected at least 1 patch, got 0")
    seed = args.seed if args.seed is not None else cfg.jobs.relax_seed
    seeds = (
        [int(i) % 2**63 for i in batch.ids]
        if seed is None
        else [seed + i for i in range(len(batch))]
    )
    # one patch per job in practice; a loop over patches, not pixels
    x = np.stack(
        [
            relax_patch(batch.x[i], batch.y[i], duration, seed=seeds[i], config=cfg.continuum)
            for i in range(len(batch))
        ]
    )
    result = PatchBatch(
        x=x,
        y=batch.y,
        ids=batch.ids,
        replica=batch.replica,
        time_us=batch.time_us + duration,
        centre_nm=batch.centre_nm,
        protein_id=batch.protein_id,
    )
    write_patches(
        job_dir / args.output,
        result,
        attrs={
            "created_by": "mummi-ml relax",
            "relax_duration_us": float(duration),
            "relax_seeds": np.asarray(seeds, dtype=np.int64),
            "source": str(src.name),
        },
    )
    print(f"mummi-ml relax: {len(batch)} patch(es), {duration} us -> {job_dir / args.output}")
    return 0
