"""The patch coupler: stream patches from a running simulation to a sink, as they are produced.

Sinks: :class:`SpoolSink` writes one HDF5 file per batch into a spool directory, atomically
(``NAME.h5.tmp`` renamed to ``NAME.h5``; a reader claims only ``*.h5``); :class:`MPISink` sends
to selector ranks (protocol and naming: :mod:`mummi_ml.patch.stream`). :func:`stream_patches`
re-chunks the per-frame batches to ``batch_size`` and optionally throttles to ``rate`` patches/s.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mummi_ml.continuum.config import ContinuumConfig
from mummi_ml.continuum.params import ContinuumError
from mummi_ml.continuum.simulate import PatchSimulation, simulate_patches
from mummi_ml.patch import PatchBatch, write_patches
from mummi_ml.patch.stream import MPMDLayout, send_batch, send_end, spool_name

__all__ = ["SpoolSink", "MPISink", "RateLimiter", "stream_patches", "spool_name"]


class SpoolSink:
    """Write each batch as ``DIR/patches-r<replica>-<seq>.h5`` (temp name, then rename).

    Args:
        directory: spool directory (created if missing).
        attrs: file attributes added to every file.
    """

    def __init__(self, directory: str | Path, attrs: dict[str, Any] | None = None):
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.attrs = dict(attrs or {})
        self.files: list[Path] = []

    def __call__(self, batch: PatchBatch, seq: int) -> None:
        replica = int(batch.replica[0]) if len(batch) else 0
        path = self.directory / spool_name(replica, seq)
        write_patches(path, batch, attrs={**self.attrs, "batch_seq": seq})
        self.files.append(path)

    def close(self) -> None:
        """Nothing to flush: every file is complete once renamed."""


class MPISink:
    """Send each batch to this coupler rank's selector; END to every selector on close."""

    def __init__(self, layout: MPMDLayout):
        if layout.role != "coupler":
            raise ContinuumError(f"MPISink: expected a coupler layout, got role {layout.role!r}")
        if not layout.selector_ranks:
            raise ContinuumError(
                "couple --mpi: no selector ranks in this launch (start it as "
                "'mpiexec -n A mummi-ml couple ... : -n B mummi-ml select ...')"
            )
        self.layout = layout
        self.dest = layout.selector_for(layout.local_rank)
        self.sent = 0

    def __call__(self, batch: PatchBatch, seq: int) -> None:
        send_batch(self.layout.world, self.dest, batch, batch_seq=seq)
        self.sent += len(batch)

    def close(self) -> None:
        for rank in self.layout.selector_ranks:
            send_end(self.layout.world, rank)


class RateLimiter:
    """Sleep so that no more than ``rate`` patches/s leave on average (None: no limit)."""

    def __init__(
        self,
        rate: float | None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ):
        if rate is not None and rate <= 0:
            raise ContinuumError(f"rate: expected patches/s > 0, got {rate}")
        self.rate = rate
        self.clock = clock
        self.sleep = sleep
        self.start = clock()
        self.count = 0

    def wait(self, n: int) -> None:
        """Account for ``n`` patches about to leave; sleep until they are allowed to."""
        if self.rate is None:
            return
        due = self.start + self.count / self.rate
        delay = due - self.clock()
        if delay > 0:
            self.sleep(delay)
        self.count += n


def stream_patches(
    cfg: ContinuumConfig | None,
    n_patches: int,
    sink: Callable[[PatchBatch, int], None],
    preset: str | None = None,
    replica: int = 0,
    batch_size: int = 64,
    rate: float | None = None,
    progress: Callable[[int], None] | None = None,
) -> int:
    """Simulate ``n_patches`` patches of one replica and hand them to ``sink(batch, seq)`` in
    batches of ``batch_size`` (the last may be smaller), at most ``rate`` patches/s.

    Returns:
        number of batches emitted.
    """
    if batch_size < 1:
        raise ContinuumError(f"batch_size: expected >= 1, got {batch_size}")
    limiter = RateLimiter(rate)
    pending: list[PatchBatch] = []
    n_pending = 0
    seq = 0

    def emit(batch: PatchBatch) -> None:
        nonlocal seq
        limiter.wait(len(batch))
        sink(batch, seq)
        seq += 1
        if progress is not None:
            progress(len(batch))

    sim = PatchSimulation(cfg, preset, replica)
    for frame in simulate_patches(cfg, n_patches, simulation=sim):
        pending.append(frame)
        n_pending += len(frame)
        while n_pending >= batch_size:
            allp = PatchBatch.concat(pending)
            emit(allp.subset(slice(0, batch_size)))
            rest = allp.subset(slice(batch_size, None))
            pending, n_pending = [rest], len(rest)
    if n_pending:
        emit(PatchBatch.concat(pending))
    return seq

