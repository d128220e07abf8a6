"""``mummi-ml embed``: embed every patch of HDF5 files with a trained metric into a ``.npy``.

Row i of the output is patch i of the files in order (as ``PatchDataset(files)`` reads them).
The files are validated first as ``train`` validates its data
(:func:`~mummi_ml.patch.validate_dataset`), and a non-finite embedding is refused: nothing is
written unless every row is finite.
"""

from __future__ import annotations

import argparse
import os
import sys

from mummi_ml.durable import atomic_path

HELP = "embed patches with a trained metric: HDF5 patch files -> z.npy [N, d] float32"
USES_CONFIG = False  # reads no configuration: no --config/--set


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, metavar="DIR", help="model directory")
    parser.add_argument("--data", required=True, nargs="+", metavar="F.h5", help="patch files")
    parser.add_argument("--out", required=True, metavar="Z.npy", help="output .npy [N, d]")
    parser.add_argument(
        "--batch-size", type=int, default=4096, help="patches read and embedded at once"
    )
    parser.add_argument(
        "--device", default=None, help="cpu, cuda or cuda:K (default: best present)"
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    import numpy as np
    from tqdm import tqdm

    from mummi_ml.metric import Metric, MetricError
    from mummi_ml.patch import PatchDataset, validate_dataset

    if args.batch_size < 1:
        raise MetricError(f"--batch-size: expected >= 1, got {args.batch_size}")
    out = Path(args.out)
    if out.suffix != ".npy":
        raise MetricError(f"--out: expected a .npy file name, got {out.name!r}")
    if out.is_dir():
        raise MetricError(f"--out: {out} is a directory, expected a .npy file name")
    if not out.parent.is_dir():
        raise MetricError(f"--out: directory {out.parent} does not exist")
    metric = Metric.load(args.model, device=args.device)
    quiet = args.no_progress or not sys.stderr.isatty() or os.environ.get("CI") in ("1", "true")
    with PatchDataset([Path(p) for p in args.data]) as ds:
        # the checks train applies (finite, physically possible concentrations, consistent
        # counts, unique ids), in one streaming pass before any work: a metric embeds garbage
        # into plausible-looking vectors, so garbage must not reach it
        validate_dataset(ds, args.batch_size)
        n = len(ds)
        # a hidden name no "*.npy" glob matches; removed on any failure
        with atomic_path(out, fsync=False) as tmp:
            z = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32,
                                          shape=(n, metric.latent_dim))
            pos = 0
            with tqdm(total=n, unit="patch", desc="embed", disable=quiet,
                      file=sys.stderr) as bar:
                for batch in ds.iter_batches(args.batch_size):
                    zb = metric.embed(batch.x, args.batch_size)
                    bad = ~np.isfinite(zb).all(axis=1)
                    if bad.any():
                        i = int(np.flatnonzero(bad)[0])
                        raise MetricError(
                            f"patch {pos + i} (id {int(batch.ids[i])}): the model gives a "
                            f"non-finite embedding ({int(bad.sum())} such patches in this batch); "
                            "nothing written"
                        )
                    z[pos : pos + len(batch)] = zb
                    pos += len(batch)
                    bar.update(len(batch))
            z.flush()
            del z
    print(f"mummi-ml embed: {n} patches -> {out} [{n}, {metric.latent_dim}] "
          f"(model {metric.version})", file=sys.stderr)
    return 0
