"""``mummi-ml simulate``: run the synthetic continuum model and write patches to HDF5.

Under ``mpiexec -n R`` (or srun / jsrun / flux run) each rank runs its own replica
(seed + replica id) for its share of ``--patches`` and writes ``OUT.rank<r>.h5``; read them as
one with ``PatchDataset("OUT.rank*.h5")``. ``--histories K`` also writes dense single-protein
histories to ``OUT.histories.h5`` (per rank: ``OUT.histories.rank<r>.h5``). ``--plot DIR`` draws
a Figure-1-style patch panel and a Figure-11-style drift plot (rank 0).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

HELP = "run the synthetic continuum membrane model and write patches (one shard per MPI rank)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--preset",
        choices=["pre-campaign", "campaign"],
        default=None,
        help="parameter preset (default: continuum.preset of the config)",
    )
    parser.add_argument(
        "--patches", type=int, default=1000, help="patches to write, over all ranks (count)"
    )
    parser.add_argument("--out", required=True, metavar="F.h5", help="output HDF5 patch file")
    parser.add_argument(
        "--histories",
        type=int,
        default=0,
        metavar="K",
        help="also write K dense single-protein histories to F.histories.h5",
    )
    parser.add_argument("--plot", metavar="DIR", default=None, help="write PNG figures to DIR")
    parser.add_argument(
        "--plot-reference",
        metavar="REF.h5",
        default=None,
        help="another run (e.g. pre-campaign) drawn next to this one in the drift figure",
    )
    parser.add_argument(
        "--replica-offset", type=int, default=0, help="replica id of rank 0 (default 0)"
    )
    parser.add_argument(
        "--compression",
        type=int,
        default=1,
        choices=range(10),
        metavar="0-9",
        help="gzip level of the patch file (0: none, fastest; default 1)",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def _progress_bar(total: int, desc: str, enabled: bool):
    from tqdm import tqdm

    quiet = not sys.stderr.isatty() or os.environ.get("CI", "").lower() in ("1", "true")
    return tqdm(total=total, desc=desc, unit="patch", disable=quiet or not enabled)


def histories_path(out: str | Path) -> Path:
    """Where ``--histories`` go for ``--out out``: ``<stem>.histories<suffix>``."""
    out = Path(out)
    return out.with_name(f"{out.stem}.histories{out.suffix or '.h5'}")


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from mummi_ml.cli._common import config_from_args
    from mummi_ml.continuum.params import ContinuumError
    from mummi_ml.continuum.replicas import shard_path, split_count, world_comm
    from mummi_ml.continuum.simulate import simulate_histories, simulate_to_file
    from mummi_ml.patch import write_patches

    cfg = config_from_args(args).continuum
    if args.patches < 0:
        raise ContinuumError(f"--patches: expected >= 0, got {args.patches}")
    if args.histories < 0:
        raise ContinuumError(f"--histories: expected >= 0, got {args.histories}")
    if args.replica_offset < 0:
        raise ContinuumError(f"--replica-offset: expected >= 0, got {args.replica_offset}")
    if args.histories and cfg.n_ras == 0:
        raise ContinuumError("--histories: need continuum.n_ras > 0 to follow proteins")
    if args.plot_reference is not None and not Path(args.plot_reference).is_file():
        raise ContinuumError(f"--plot-reference: not a regular file: {args.plot_reference}")
    if args.plot is not None:  # before the work, not after it
        plot_dir = Path(args.plot)
        try:
            plot_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ContinuumError(f"--plot: cannot create directory {args.plot} "
                                 f"({exc.strerror or exc})") from None
        if not os.access(plot_dir, os.W_OK):
            raise ContinuumError(f"--plot: directory {args.plot} is not writable")
    comm = world_comm()
    rank, size = (comm.Get_rank(), comm.Get_size()) if comm is not None else (0, 1)
    replica = args.replica_offset + rank
    preset = args.preset or cfg.preset
    n_local = split_count(args.patches, rank, size)
    out = shard_path(args.out, rank, size)
    show = not args.no_progress and rank == 0

    last: dict = {}

    def keep_last(batch, sim) -> None:
        last["batch"], last["sim"] = batch, sim

    t0 = time.perf_counter()
    with _progress_bar(n_local, f"simulate {preset} r{replica}", show) as bar:
        simulate_to_file(
            cfg, out, n_local, preset, replica, progress=bar.update, on_batch=keep_last,
            compression_level=args.compression,
        )
    elapsed = time.perf_counter() - t0
    sim_time = last["sim"].time_us if last else 0.0
    print(
        f"rank {rank}: wrote {n_local} patches to {out} (replica {replica}, {preset}, "
        f"{sim_time:.1f} us simulated, {n_local / max(elapsed, 1e-9):.1f} patches/s)",
        file=sys.stderr,
    )
    if args.histories:
        k_local = split_count(args.histories, rank, size)
        hist_out = shard_path(histories_path(args.out), rank, size)
        with _progress_bar(
            k_local * (int(round(cfg.histories.duration_us / cfg.histories.interval_us)) + 1),
            f"histories r{replica}",
            show,
        ) as bar:
            hist = simulate_histories(cfg, k_local, preset, replica, progress=bar.update)
        attrs = {
            "kind": "histories",
            "preset": preset,
            "replica": replica,
            "history_interval_us": cfg.histories.interval_us,
            "history_duration_us": cfg.histories.duration_us,
            "continuum_config": cfg.model_dump_json(),
        }
        write_patches(hist_out, hist, attrs=attrs)
        print(f"rank {rank}: wrote {k_local} histories ({len(hist)} patches) to {hist_out}",
              file=sys.stderr)
    if args.plot and rank == 0 and last:
        _plot(args, out, last, preset, np)
    return 0


def _plot(args: argparse.Namespace, out: Path, last: dict, preset: str, np) -> None:
    from mummi_ml.continuum.patches import window_members
    from mummi_ml.continuum.plots import drift_series, plot_drift, plot_patches
    from mummi_ml.patch import PatchDataset

    batch, sim = last["batch"], last["sim"]
    cls = batch.classes
    picks = [int(np.flatnonzero(cls == c)[0]) for c in range(4) if np.any(cls == c)]
    most = int(np.argmax(batch.y[:, 0]))
    if most not in picks:
        picks.append(most)
    sub = batch.subset(np.array(picks))
    state, grid = sim.model.state, sim.model.grid
    members = window_members(
        sub.centre_nm.astype(np.float64), state.wrapped_pos(grid.length_nm), state.bound,
        grid.length_nm,
    )
    plot_dir = Path(args.plot)
    p1 = plot_patches(sub.x, sub.y, plot_dir / "figure1_patches.png", proteins=members)
    series = {}
    if args.plot_reference:
        with PatchDataset(args.plot_reference) as ref:
            series[str(ref.attrs.get("preset", "reference"))] = drift_series(ref.iter_batches(512))
    with PatchDataset(out) as ds:
        series[preset] = drift_series(ds.iter_batches(512))
    p2 = plot_drift(series, plot_dir / "figure11_drift.png")
    print(f"wrote {p1} and {p2}", file=sys.stderr)
